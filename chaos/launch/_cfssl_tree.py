"""The CFSSL lab's CA tree on disk: a root, issuing CAs it signed, their signing configs.

    root_config = make_root(run_dir / "root")        # ca.pem, ca-key.pem (0600), config.json
    make_issuing_ca(run_dir / "primary", "primary", run_dir / "root", root_config)
    config = signing_config(auth_key, crl_url, STANDARD_PROFILES)   # the CA's config.json
    cert_pem = sign_with_root(run_dir / "root", csr_pem)     # another CA's CSR, by the root
    write_secret(path, data)                         # 0600 before any byte is written

Everything here runs the ``cfssl`` command line once per step (``gencert
-initca``, ``genkey``, ``sign -profile intermediate``) and leaves files;
:class:`chaos.launch.cfssl.CfsslLab` decides when (first start only) and
keeps ports and auth keys in its ``state.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chaos.launch._process import LaunchError
from connector.ca._profiles import CaProfile

__all__ = [
    "AUTH_KEY_NAME",
    "cfssl_json",
    "make_issuing_ca",
    "make_root",
    "sign_with_root",
    "signing_config",
    "write_secret",
]

AUTH_KEY_NAME = "pfxha-connector"
_ORG = "pfxha lab"


def cfssl_json(args: Sequence[str], stdin: dict[str, Any] | None, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["cfssl", *args],
        input=json.dumps(stdin).encode() if stdin is not None else None,
        capture_output=True,
        cwd=cwd,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise LaunchError(f"cfssl {args[0]} failed: {result.stderr.decode(errors='replace')}")
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def write_secret(path: Path, data: str | bytes) -> None:
    """Create ``path`` as 0600 before any byte of the secret is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def signing_config(
    auth_key: str, crl_url: str, profiles: Mapping[str, CaProfile]
) -> dict[str, Any]:
    return {
        "signing": {
            # CFSSL signs unknown profile names with the default profile; lock it
            # with a key nobody holds, so such requests fail instead.
            "default": {"expiry": "1h", "usages": ["digital signature"], "auth_key": "locked"},
            "profiles": {
                name: {
                    "expiry": f"{p.validity_hours}h",
                    "usages": p.cfssl_usages,
                    "auth_key": AUTH_KEY_NAME,
                    "crl_url": crl_url,
                }
                for name, p in profiles.items()
            },
        },
        "auth_keys": {
            AUTH_KEY_NAME: {"type": "standard", "key": auth_key},
            "locked": {"type": "standard", "key": secrets.token_hex(16)},
        },
    }


def make_root(root_dir: Path) -> Path:
    """The self-signed lab root in ``root_dir``; returns its signing config's path."""
    root_dir.mkdir(exist_ok=True)
    root = cfssl_json(
        ["gencert", "-initca", "-"],
        {
            "CN": "pfxha Lab Root CA",
            "key": {"algo": "ecdsa", "size": 256},
            "names": [{"O": _ORG}],
            "ca": {"expiry": "87600h"},
        },
        root_dir,
    )
    (root_dir / "ca.pem").write_text(root["cert"])
    write_secret(root_dir / "ca-key.pem", root["key"])
    root_config = root_dir / "config.json"
    root_config.write_text(
        json.dumps(
            {
                "signing": {
                    "default": {"expiry": "43800h"},
                    "profiles": {
                        "intermediate": {
                            "expiry": "43800h",
                            "usages": ["cert sign", "crl sign"],
                            "ca_constraint": {
                                "is_ca": True,
                                "max_path_len": 0,
                                "max_path_len_zero": True,
                            },
                        }
                    },
                }
            }
        )
    )
    return root_config


def make_issuing_ca(ca_dir: Path, name: str, root_dir: Path, root_config: Path) -> None:
    """Issuing CA ``name``'s key (0600) and certificate, signed by the root, in ``ca_dir``."""
    ca_dir.mkdir(exist_ok=True)
    generated = cfssl_json(
        ["genkey", "-"],
        {
            "CN": f"pfxha Issuing CA {name}",
            "key": {"algo": "ecdsa", "size": 256},
            "names": [{"O": _ORG}],
        },
        ca_dir,
    )
    write_secret(ca_dir / "ca-key.pem", generated["key"])
    (ca_dir / "ca.csr").write_text(generated["csr"])
    signed = cfssl_json(
        [
            "sign",
            "-ca",
            str(root_dir / "ca.pem"),
            "-ca-key",
            str(root_dir / "ca-key.pem"),
            "-config",
            str(root_config),
            "-profile",
            "intermediate",
            str(ca_dir / "ca.csr"),
        ],
        None,
        ca_dir,
    )
    (ca_dir / "ca.pem").write_text(signed["cert"])


def sign_with_root(root_dir: Path, csr: str) -> str:
    """The root in ``root_dir`` signs an issuing CA's CSR (PEM in, certificate PEM out)."""
    request = root_dir / f"request-{secrets.token_hex(4)}.csr"
    request.write_text(csr)
    try:
        signed = cfssl_json(
            ["sign", "-ca", str(root_dir / "ca.pem"), "-ca-key", str(root_dir / "ca-key.pem"),
             "-config", str(root_dir / "config.json"), "-profile", "intermediate",
             str(request)],
            None,
            root_dir,
        )  # fmt: skip
    finally:
        request.unlink(missing_ok=True)
    return str(signed["cert"])
