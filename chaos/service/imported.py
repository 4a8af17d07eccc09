"""Imported PFX (Intune's "PKCS imported certificates"): an admin's PFX for a user.

An admin uploads, for a user, a PFX already sealed to the service's KRA
certificate (``pfxha service import-pfx`` does the sealing); the service keeps
that envelope as the escrow copy of a user-scoped certificate and delivers it
to the user's devices like one the connector issued::

    check = check_import(pfx_der, now)         # ImportCheck(certificate, None) or (None, why)
    with store.db.transaction() as tx:
        request_id = store_import(store, tx, user_id="ann", profile_id="smime-imported",
                                  envelope=blob, certificate=check.certificate)

The profile must be ``scope: user, source: imported`` (nothing is requested
from a CA for it). A newer import for the same user and profile makes the
previous one a decrypt-only history key. Imported certificates are never
revoked at any CA (pfxha does not run the CA that issued them): removal events
take them off the devices (``requests.revocation = 'not-at-ca'``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from chaos.service.rules import Event
from chaos.service.store import ApiError, Store
from chaos.service.user_certs import CURRENT, retire_to_history

__all__ = ["ImportCheck", "check_import", "issuer_name", "store_import"]


@dataclass(frozen=True)
class ImportCheck:
    certificate: x509.Certificate | None  # None: refused, ``problem`` says why
    problem: str | None


def _spki(obj: object) -> bytes:
    return obj.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_import(pfx: bytes, now: dt.datetime) -> ImportCheck:
    """Can this PFX (from inside the KRA envelope) be delivered to devices as it is?"""
    try:
        bundle = pkcs12.load_pkcs12(pfx, None)
    except ValueError as exc:
        return ImportCheck(
            None,
            f"the PFX in the envelope does not open without a password ({exc}); "
            "pfxha service import-pfx re-packs a password-protected PFX before sealing",
        )
    if bundle.cert is None or bundle.key is None:
        return ImportCheck(None, "the PFX must hold one certificate and its private key")
    cert = bundle.cert.certificate
    if _spki(bundle.key.public_key()) != _spki(cert.public_key()):
        return ImportCheck(None, "the PFX's private key does not match its certificate")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return ImportCheck(
            None, f"the certificate is not valid now (until {cert.not_valid_after_utc.isoformat()})"
        )
    return ImportCheck(cert, None)


def issuer_name(cert: x509.Certificate) -> str:
    """What ``ca_name`` says for an imported certificate: ``imported:<issuer CN>``."""
    names = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"imported:{str(names[0].value) if names else cert.issuer.rfc4514_string()}"[:200]


def store_import(
    store: Store,
    tx: sqlite3.Connection,
    *,
    user_id: str,
    profile_id: str,
    envelope: bytes,
    certificate: x509.Certificate,
) -> tuple[str, str | None]:
    """Record the import as the user's current certificate of the profile:
    ``(request id, the request it superseded or None)``."""
    store.row(tx, "users", user_id)
    profile = store.row(tx, "profiles", profile_id)
    if profile["source"] != "imported":
        raise ApiError(
            400,
            f"profile {profile_id!r} is not an imported-PFX profile: create one with "
            'scope "user" and source "imported"',
        )
    serial = str(certificate.serial_number)
    issuer = issuer_name(certificate)
    same = tx.execute(
        "SELECT id FROM requests WHERE kind = 'imported' AND user_id = ? AND profile_id = ? "
        "AND serial = ? AND ca_name = ?",
        (user_id, profile_id, serial, issuer),
    ).fetchone()
    if same is not None:
        raise ApiError(409, f"certificate {serial} of {issuer} already imported as {same['id']}")
    old = tx.execute(
        f"SELECT * FROM requests r WHERE r.scope = 'user' AND r.user_id = ? "  # noqa: S608
        f"AND r.profile_id = ? AND {CURRENT}",
        (user_id, profile_id),
    ).fetchall()
    for row in old:
        retire_to_history(store, tx, row, Event.RENEWAL, "superseded")
    request_id = store.new_id("imp")
    now = store.now_iso()
    tx.execute(
        "INSERT INTO requests(id, seq, device_id, profile_id, kind, replaces, state, created_at, "
        "updated_at, envelope, serial, ca_name, certificate_pem, not_before, not_after, "
        "issued_at, scope, user_id, escrow) "
        "VALUES (?, ?, ?, ?, 'imported', ?, 'issued', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'user', ?, "
        "'current')",
        (
            request_id,
            store.db.next_seq(tx),
            user_id,
            profile_id,
            old[-1]["id"] if old else None,
            now,
            now,
            envelope,
            serial,
            issuer,
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            certificate.not_valid_before_utc.isoformat(),
            certificate.not_valid_after_utc.isoformat(),
            now,
            user_id,
        ),
    )
    store.event(
        tx, "pfx-imported", user_id, request=request_id, profile=profile_id, serial=serial,
        issuer=issuer, superseded=old[-1]["id"] if old else None,
    )  # fmt: skip
    return request_id, old[-1]["id"] if old else None
