"""Who may call what: one FastAPI dependency per caller kind.

    auth = AuthPolicy.with_admin_token(token)        # or AuthPolicy() for open
    auth = replace(auth, connector_ca=ca, device_ca=keys.device_ca_certificate,
                   device_certificate=lookup, on_refused=metrics.auth_refused)
    router = APIRouter(dependencies=[Depends(auth.admin)])

* admin and read APIs: ``Authorization: Bearer <token>``. The service keeps
  only a digest: SHA-256 of a token given at start (a random token has nothing
  to guess), or an scrypt hash read from a file (``scrypt$n$r$p$salt$hash``,
  :func:`hash_credential`), for credentials a person chose. Compared in
  constant time; a verified scrypt credential is remembered by its SHA-256 so
  scrypt runs once, not per call.
* connector API (with ``connector_ca``): mutual TLS with a certificate that
  CA issued, valid now; the ``name`` in the body must be its CN (403 if not).
  Revocation is checked by the fencing gate, by name, on every call.
* device API (with ``device_ca``): mutual TLS with the device's management
  certificate: issued by the device CA, ``serialNumber`` = the device id in
  the path, and the very certificate the service holds for that device.

Refusals are counted by a fixed reason word, never by anything the caller sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID
from fastapi import Request

from chaos.service.enrollment import ConnectorCA
from chaos.service.store import ApiError
from chaos.service.tls import client_certificate_pem

__all__ = ["AuthPolicy", "hash_credential", "verify_credential"]

_ADMIN_REQUIRED = "admin credential required (Authorization: Bearer <token>)"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_credential(secret: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): what an admin credential file holds."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    parts = [str(_SCRYPT["n"]), str(_SCRYPT["r"]), str(_SCRYPT["p"])]
    parts += [base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    return "scrypt$" + "$".join(parts)


def verify_credential(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def _ignore(api: str, reason: str) -> None:
    pass


@dataclass(frozen=True)
class AuthPolicy:
    admin_token_sha256: bytes | None = None
    admin_scrypt: str | None = field(default=None, repr=False)
    connector_ca: ConnectorCA | None = None
    device_ca: x509.Certificate | None = None
    # device id -> the management certificate PEM the service holds (None: unknown)
    device_certificate: Callable[[str], str | None] = lambda device_id: None
    on_refused: Callable[[str, str], None] = _ignore
    clock: Callable[[], float] = time.time
    _verified: set[bytes] = field(default_factory=set, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def with_admin_token(cls, token: str | None) -> AuthPolicy:
        if not token:
            return cls()
        return cls(admin_token_sha256=hashlib.sha256(token.encode()).digest())

    @property
    def admin_required(self) -> bool:
        return self.admin_token_sha256 is not None or self.admin_scrypt is not None

    def _refuse(self, api: str, reason: str, status: int, message: str) -> ApiError:
        self.on_refused(api, reason)
        return ApiError(status, message)

    def admin(self, request: Request) -> None:
        if not self.admin_required:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        presented = hashlib.sha256(token.encode()).digest()
        if scheme.lower() == "bearer" and token and self._admin_ok(token, presented):
            return
        raise self._refuse("admin", "bad_credential", 401, _ADMIN_REQUIRED)

    def _admin_ok(self, token: str, presented: bytes) -> bool:
        if self.admin_token_sha256 is not None and hmac.compare_digest(
            presented, self.admin_token_sha256
        ):
            return True
        if self.admin_scrypt is None:
            return False
        with self._lock:
            if presented in self._verified:
                return True
        if verify_credential(token, self.admin_scrypt):
            with self._lock:
                self._verified.add(presented)
            return True
        return False

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def connector_name(self, request: Request) -> str | None:
        """The CN of the caller's verified connector certificate (None when mTLS is off)."""
        if self.connector_ca is None:
            return None
        try:
            name, _ = self.connector_ca.verify_client(
                client_certificate_pem(dict(request.scope)), self._now()
            )
        except ApiError as exc:
            reason = "no_certificate" if exc.status == 401 else "bad_certificate"
            raise self._refuse("connector", reason, exc.status, exc.reason) from exc
        except ValueError as exc:
            raise self._refuse(
                "connector", "bad_certificate", 403, "unreadable certificate"
            ) from exc
        return name

    async def connector(self, request: Request) -> None:
        name = self.connector_name(request)
        if name is None:
            return
        request.state.connector_name = name
        claimed = _body_name(await request.body())
        if claimed is not None and claimed != name:
            raise self._refuse(
                "connector",
                "name_mismatch",
                403,
                f"the call is made as {claimed[:64]!r} but the certificate is {name!r}",
            )

    def device(self, request: Request) -> None:
        if self.device_ca is None:
            return
        device_id = str(request.path_params.get("device_id", ""))
        pem = client_certificate_pem(dict(request.scope))
        if pem is None:
            raise self._refuse(
                "device", "no_certificate", 401, "the device management certificate is required"
            )
        cert = x509.load_pem_x509_certificate(pem.encode())
        serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        now = self._now()
        if (
            cert.issuer != self.device_ca.subject
            or not serials
            or serials[0].value != device_id
            or not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
        ):
            raise self._refuse(
                "device", "bad_certificate", 403, "not this device's management certificate"
            )
        stored = self.device_certificate(device_id)
        if stored is None or x509.load_pem_x509_certificate(stored.encode()) != cert:
            raise self._refuse(
                "device", "bad_certificate", 403, "not this device's management certificate"
            )


def _body_name(body: bytes) -> str | None:
    if not body:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # the schema check answers 422
    if isinstance(parsed, dict):
        name = parsed.get("name")
        return name if isinstance(name, str) else None
    return None
