"""A CA's auth material, re-read on SIGHUP and validated before anything is swapped.

    material = cfssl_material(spec)   # CfsslMaterial, or AuthMaterialError(setting, reason)
    creds = openbao_material(spec)    # AppRoleCredentials, or AuthMaterialError
    settings = ca.reload_auth(spec)   # each driver: validate, then swap (CfsslCA, OpenBaoCA)
    outcomes = router.reload_auth({name: spec})   # one ReloadOutcome per CA

What is re-read: CFSSL's ``auth_key_file`` (the HMAC key of ``authsign``) and its
mutual-TLS pair ``client_certificate`` + ``client_key_file``; OpenBao's AppRole
``role_id_file`` + ``secret_id_file``. The paths come from the configuration as
it was loaded (the file is re-read, not the configuration). A new file that is
missing, readable by group or others, empty, not hex, not a PEM certificate,
expired, or a key that does not match its certificate is refused with the
setting named, and the CA keeps the material it had: a half-written rotation
never takes a CA down. An inline ``auth_key`` (the lab's description) has
nothing to re-read.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from connector.ca._approle import AppRoleCredentials, SecretFileError, read_secret_file

__all__ = [
    "AuthMaterialError",
    "CfsslMaterial",
    "ReloadOutcome",
    "cfssl_material",
    "openbao_material",
]


class AuthMaterialError(ValueError):
    """New auth material refused: ``setting`` names the ``[[ca]]`` key, ``reason`` why."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"{setting}: {reason}")


@dataclass(frozen=True)
class CfsslMaterial:
    """What a CFSSL CA authenticates with; ``auth_key`` None: inline, nothing re-read."""

    auth_key: bytes | None
    verify: ssl.SSLContext | bool
    settings: tuple[str, ...]


@dataclass(frozen=True)
class ReloadOutcome:
    """One CA's reload: the settings re-read, or the one refused and why (old kept)."""

    ca: str
    settings: tuple[str, ...] = ()
    refused: str | None = None
    reason: str = ""
    detail: str = ""


def _secret(spec: Mapping[str, Any], setting: str) -> str:
    try:
        return read_secret_file(spec[setting], what=setting)
    except SecretFileError as exc:
        raise AuthMaterialError(setting, str(exc).removeprefix(f"{setting}: ")) from None


def _client_pair(spec: Mapping[str, Any], now: dt.datetime) -> ssl.SSLContext:
    cert_path, key_path = Path(spec["client_certificate"]), spec["client_key_file"]
    _secret(spec, "client_key_file")  # 0600, present, not empty
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise AuthMaterialError("client_certificate", f"cannot read {cert_path}: {exc}") from None
    except ValueError:
        raise AuthMaterialError(
            "client_certificate", f"{cert_path} is not a PEM certificate"
        ) from None
    if certificate.not_valid_after_utc <= now:
        raise AuthMaterialError(
            "client_certificate", f"{cert_path} expired {certificate.not_valid_after_utc}"
        )
    if certificate.not_valid_before_utc > now:
        raise AuthMaterialError(
            "client_certificate",
            f"{cert_path} is not valid before {certificate.not_valid_before_utc}",
        )
    ca_file = spec.get("ca_file")
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as exc:
        raise AuthMaterialError(
            "client_key_file", f"{key_path} does not match {cert_path} ({exc.reason})"
        ) from None
    return context


def cfssl_material(spec: Mapping[str, Any], *, now: dt.datetime | None = None) -> CfsslMaterial:
    """Read and check a CFSSL CA's auth key file and client pair (AuthMaterialError)."""
    settings: list[str] = []
    auth_key: bytes | None = None
    if spec.get("auth_key_file"):
        text = _secret(spec, "auth_key_file")
        try:
            auth_key = bytes.fromhex(text)
        except ValueError:
            raise AuthMaterialError("auth_key_file", "is not a hex key") from None
        settings.append("auth_key_file")
    client_cert, client_key = spec.get("client_certificate"), spec.get("client_key_file")
    if bool(client_cert) != bool(client_key):
        raise AuthMaterialError(
            "client_key_file", "client_certificate and client_key_file go together"
        )
    verify: ssl.SSLContext | bool = True
    if client_cert:
        verify = _client_pair(spec, now or dt.datetime.now(dt.UTC))
        settings += ["client_certificate", "client_key_file"]
    elif spec.get("ca_file"):
        verify = ssl.create_default_context(cafile=str(spec["ca_file"]))
    return CfsslMaterial(auth_key, verify, tuple(settings))


def openbao_material(spec: Mapping[str, Any]) -> AppRoleCredentials:
    """Read and check an OpenBao CA's AppRole files (AuthMaterialError)."""
    role_id = _secret(spec, "role_id_file")
    secret_id = _secret(spec, "secret_id_file")
    mount = str(spec.get("approle_mount") or "approle").strip("/")
    return AppRoleCredentials(role_id=role_id, secret_id=secret_id, mount=mount)
