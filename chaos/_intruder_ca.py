"""The intruder's attacks on the CAs: anonymous, foreign-CA and not-allowed callers at
every issuing CFSSL CA, and a revoked member's issue.

    cfssl = cfssl_of(lab.cas)                  # None when the lab runs OpenBao CAs only
    results = ca_attacks(cfssl, workdir)       # {"ca primary: anonymous newcert": None, ...}
    outcome = ca_refuses(cfssl, "c9")          # None once c9 is denied at the CA

Outcomes follow :mod:`chaos._intruder_refusals`: None when refused, else what
the CA did instead. The attacks are CFSSL's mutual TLS and endpoints; OpenBao
CAs are not attacked here.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from chaos.launch.cfssl import CfsslLab
from chaos.launch.service import self_signed_loopback
from connector.ca import CAAuthError, CfsslCA
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key

__all__ = ["ca_attacks", "ca_refuses", "cfssl_of", "refused_by_ca"]


def refused_by_ca(call: Callable[[], httpx.Response]) -> str | None:
    """None when the CA did not serve it (no TLS session, or ``Invalid CN``)."""
    try:
        reply = call()
    except httpx.TransportError:
        return None
    if reply.text.strip() == "Invalid CN":
        return None
    if reply.status_code == 400 and "HTTPS server" in reply.text:
        return None  # plain HTTP to the TLS port
    return f"HTTP {reply.status_code}: {reply.text[:120]}"


def cfssl_of(cas: Any) -> CfsslLab | None:
    """The lab's CFSSL CAs (a :class:`~chaos.launch.ca_tier.CaTier`'s), None on OpenBao only.

    The CA attacks are CFSSL's mutual TLS and endpoints; OpenBao CAs are not attacked here.
    """
    return cas if isinstance(cas, CfsslLab) else getattr(cas, "cfssl", None)


def ca_attacks(cas: CfsslLab, workdir: Path) -> dict[str, str | None]:
    """Anonymous, foreign-CA and not-allowed callers at every issuing CA."""
    anonymous = ssl.create_default_context(cafile=str(cas.access.ca_path))
    foreign = ssl.create_default_context(cafile=str(cas.access.ca_path))
    foreign.load_cert_chain(*map(str, self_signed_loopback(workdir / "foreign")))
    stranger = f"stranger-{secrets.token_hex(3)}"  # an access-CA certificate, CN not allowed
    callers: dict[str, ssl.SSLContext | bool] = {
        "anonymous": anonymous,
        "foreign-CA cert": foreign,
        "CN not allowed": cas.access.ssl_context(stranger),
    }
    results: dict[str, str | None] = {}
    for name in cas.names:
        certdb = cas.certdb(name)
        live = next(iter(certdb.records("good")[-1:]), None)
        gone = next(iter(certdb.records("revoked")[-1:]), None)
        bodies = {
            "newcert": ("newcert", {"request": {"CN": "intruder", "hosts": ["x.example"]}}),
            "revoke": (
                "revoke",
                {"serial": str(live.serial if live else 1), "authority_key_id": "",
                 "reason": "keyCompromise"},
            ),
            "removeFromCRL": (
                "revoke",
                {"serial": str(gone.serial if gone else 1), "authority_key_id": "",
                 "reason": "removeFromCRL"},
            ),
            "init_ca": ("init_ca", {"CN": "intruder CA", "key": {"algo": "ecdsa", "size": 256}}),
        }  # fmt: skip
        for who, verify in callers.items():
            with httpx.Client(verify=verify, timeout=5.0) as http:
                for what, (endpoint, body) in bodies.items():
                    url = f"{cas.url(name)}/api/v1/cfssl/{endpoint}"
                    results[f"ca {name}: {who} {what}"] = refused_by_ca(
                        partial(http.post, url, json=body)
                    )
        plain = cas.url(name).replace("https://", "http://")
        results[f"ca {name}: plain HTTP newcert"] = refused_by_ca(
            partial(
                httpx.post,
                f"{plain}/api/v1/cfssl/newcert",
                json=bodies["newcert"][1],
                timeout=5.0,
            )
        )
        if gone is not None and not (certdb.by_serial(gone.serial) or gone).revoked:
            results[f"ca {name}: revoked certificate still revoked"] = "un-revoked"
    return results


def ca_refuses(cas: CfsslLab, client: str) -> str | None:
    ca = CfsslCA.from_dict({**cas.describe()["cas"][cas.names[0]], **cas.client_spec(client)})
    profile = ProfileTemplate("p", "CN={{UserName}}", [], KeyType.P256, "user-auth")
    variables = {"UserName": client, "DeviceId": f"{client}-device"}
    csr = csr_for_profile(generate_key(KeyType.P256), profile, variables)
    try:
        ca.issue(csr, "user-auth", f"intruder-{client}", timeout=5.0)
    except CAAuthError:
        return None
    except Exception as exc:  # any other outcome is worth reporting as is
        return f"{type(exc).__name__}: {exc}"
    finally:
        ca.close()
    return "issued"
