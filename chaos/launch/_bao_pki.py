"""The lab's PKI inside OpenBao, set up through the root token's API calls.

    api = lab._api                                   # (method, path, body=None) -> answer
    root_pem = make_root_mount(api, node_urls)       # pki_root, a self-signed lab root
    cert_pem = sign_with_root_mount(api, csr_pem)    # pki_root signs an issuing CA's CSR
    cert_pem = make_issuing_mount(api, "primary", "pki_primary", sign, node_urls, profiles)
    role_id, secret_id = create_approle(api, "c1", token_ttl_s=3600, policy="pfxha-connector")
    revoke_approle(api, "c1", secret_id)             # secret-id destroyed, tokens revoked

Every mount names every node in its CRL, OCSP and issuer URLs, so issued
certificates carry CDP and AIA whichever node is active. Each issuing mount
gets one role per template (:func:`chaos.launch._bao_policy.role_body`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from chaos.launch._bao_policy import role_body
from chaos.launch._process import LaunchError
from connector.ca._profiles import CaProfile

__all__ = [
    "ROOT_MOUNT",
    "AdminApi",
    "create_approle",
    "make_issuing_mount",
    "make_root_mount",
    "revoke_approle",
    "sign_with_root_mount",
    "urls_config",
]

ROOT_MOUNT = "pki_root"
_TTL = "87600h"


class AdminApi(Protocol):
    """A root-token call on the active node; raises LaunchError when refused."""

    def __call__(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any: ...


def urls_config(node_urls: Sequence[str], mount: str) -> dict[str, list[str]]:
    return {
        "issuing_certificates": [f"{u}/v1/{mount}/ca" for u in node_urls],
        "crl_distribution_points": [f"{u}/v1/{mount}/crl" for u in node_urls],
        "ocsp_servers": [f"{u}/v1/{mount}/ocsp" for u in node_urls],
    }


def make_root_mount(api: AdminApi, node_urls: Sequence[str]) -> str:
    """The root mount (a self-signed lab root); returns its certificate PEM."""
    api("POST", f"sys/mounts/{ROOT_MOUNT}", {"type": "pki", "config": {"max_lease_ttl": _TTL}})
    root: str = api(
        "POST",
        f"{ROOT_MOUNT}/root/generate/internal",
        {
            "common_name": "pfxha lab OpenBao root",
            "ttl": _TTL,
            "key_type": "ec",
            "key_bits": 256,
        },
    )["data"]["certificate"]
    api("POST", f"{ROOT_MOUNT}/config/urls", urls_config(node_urls, ROOT_MOUNT))
    return root


def sign_with_root_mount(api: AdminApi, csr: str) -> str:
    """The root mount signs an issuing CA's CSR (PEM in, certificate PEM out)."""
    signed: str = api(
        "POST",
        f"{ROOT_MOUNT}/root/sign-intermediate",
        {"csr": csr, "format": "pem", "ttl": "43800h", "use_csr_values": True},
    )["data"]["certificate"]
    return signed


def make_issuing_mount(
    api: AdminApi,
    ca: str,
    mount: str,
    sign: Callable[[str], str],
    node_urls: Sequence[str],
    profiles: Mapping[str, CaProfile],
) -> str:
    """Issuing CA ``ca`` at ``mount``, its certificate signed by ``sign``; returns that PEM."""
    api("POST", f"sys/mounts/{mount}", {"type": "pki", "config": {"max_lease_ttl": _TTL}})
    csr = api(
        "POST",
        f"{mount}/intermediate/generate/internal",
        {
            "common_name": f"pfxha lab OpenBao {ca} issuing CA",
            "key_type": "ec",
            "key_bits": 256,
        },
    )["data"]["csr"]
    signed = sign(csr)
    api("POST", f"{mount}/intermediate/set-signed", {"certificate": signed})
    api("POST", f"{mount}/config/urls", urls_config(node_urls, mount))
    for name, profile in profiles.items():
        api("POST", f"{mount}/roles/{name}", role_body(profile))
    return signed


def create_approle(
    api: AdminApi, connector: str, *, token_ttl_s: int, policy: str
) -> tuple[str, str]:
    """``connector``'s AppRole (made or updated) and a fresh secret-id: (role_id, secret_id)."""
    role = f"auth/approle/role/{connector}"
    api(
        "POST",
        role,
        {
            "token_policies": policy,
            "token_no_default_policy": True,
            "token_ttl": token_ttl_s,
            "token_max_ttl": "24h",
        },
    )
    role_id = api("GET", f"{role}/role-id")["data"]["role_id"]
    secret_id = api("POST", f"{role}/secret-id", {})["data"]["secret_id"]
    return role_id, secret_id


def revoke_approle(api: AdminApi, connector: str, secret_id: str | None) -> None:
    """Destroy ``secret_id`` (if any) and revoke every token ``connector``'s role holds."""
    role = f"auth/approle/role/{connector}"
    if secret_id is not None:
        api("POST", f"{role}/secret-id/destroy", {"secret_id": secret_id})
    # A token already issued outlives its secret-id: revoke the role's tokens too.
    listed = api("LIST", "auth/token/accessors")
    for accessor in (listed.get("data") or {}).get("keys") or []:
        try:
            found = api("POST", "auth/token/lookup-accessor", {"accessor": accessor})
        except LaunchError:
            continue  # expired between the listing and the lookup
        meta = (found.get("data") or {}).get("meta") or {}
        if meta.get("role_name") == connector:
            api("POST", "auth/token/revoke-accessor", {"accessor": accessor})
