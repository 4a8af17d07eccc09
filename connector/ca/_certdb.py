"""Read-only access to a CFSSL certdb (the SQLite flavour the lab runs).

CFSSL has no search API, so reconciliation and CRL building read the CA's
own database, never write it::

    db = CertDB(Path("runs/lab/cfssl/primary/certdb.sqlite"))
    for record in db.find_by_public_key(key.public_key()):
        print(record.serial, record.status)
    revoked = db.records(status="revoked")

What the Debian CFSSL 1.2 build stores (measured): ``serial_number`` is the
decimal serial as text, ``authority_key_identifier`` is the empty string,
``status`` is ``good`` or ``revoked``, ``reason`` is the RFC 5280 reason code,
``expiry`` looks like ``2027-11-25 17:56:00+00:00``, ``revoked_at`` like
``2026-11-25 18:01:34`` (UTC) or the zero time ``0001-01-01 00:00:00+00:00``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["CERTDB_SCHEMA", "CertDB", "CertDBError", "CertRecord", "create_certdb"]

# CFSSL's certdb/sqlite migration (goose "Up" section of 001_CreateCertificates.sql).
CERTDB_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE IF NOT EXISTS ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier)
    REFERENCES certificates(serial_number, authority_key_identifier)
);
"""


_SELECT = (
    "SELECT serial_number, authority_key_identifier, status, reason, expiry, revoked_at, pem "
    "FROM certificates"
)


class CertDBError(RuntimeError):
    """The certdb could not be read (missing file, unexpected schema, corrupt row)."""


@dataclass(frozen=True)
class CertRecord:
    """One row of the ``certificates`` table, decoded."""

    serial: int
    aki: str
    status: str
    reason: int
    expiry: dt.datetime | None
    revoked_at: dt.datetime | None
    certificate: x509.Certificate

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"


def create_certdb(path: Path) -> None:
    """Create the schema CFSSL expects (idempotent): the Debian build does not migrate.

    The database is switched to WAL mode (a persistent property of the file):
    reconciliation and the CRL server read while CFSSL writes, and in WAL
    readers never block the CA's inserts, which also cost fewer fsyncs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(CERTDB_SCHEMA)
        conn.commit()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return "" if value is None else str(value)


def _timestamp(value: object) -> dt.datetime | None:
    text = _text(value).strip()
    if not text or text.startswith("0001-01-01"):
        return None
    text = text.replace("T", " ").replace("Z", "+00:00")
    # Go may write nanoseconds; Python parses at most microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class CertDB:
    """A read-only view of one CA's certdb; every call opens and closes its own connection."""

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._timeout = timeout

    def _rows(self, where: str = "", params: tuple[object, ...] = ()) -> Iterator[CertRecord]:
        if not self.path.exists():
            raise CertDBError(f"certdb not found: {self.path}")
        uri = f"file:{self.path}?mode=ro"
        # ``where`` is one of this module's literals, never caller input.
        sql = f"{_SELECT} {where}"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=self._timeout)) as conn:
                rows = conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise CertDBError(f"cannot read certdb {self.path}: {exc}") from exc
        for serial, aki, status, reason, expiry, revoked_at, pem in rows:
            try:
                certificate = x509.load_pem_x509_certificate(
                    pem if isinstance(pem, bytes) else str(pem).encode()
                )
                record = CertRecord(
                    serial=int(_text(serial)),
                    aki=_text(aki),
                    status=_text(status),
                    reason=int(reason or 0),
                    expiry=_timestamp(expiry),
                    revoked_at=_timestamp(revoked_at),
                    certificate=certificate,
                )
            except ValueError as exc:
                raise CertDBError(f"corrupt row in {self.path}: {exc}") from exc
            yield record

    def records(self, status: str | None = None) -> list[CertRecord]:
        """Every certificate the CA recorded, optionally only ``good`` or ``revoked`` ones."""
        if status is None:
            return list(self._rows())
        return list(self._rows("WHERE status = ?", (status,)))

    def by_serial(self, serial: int) -> CertRecord | None:
        found = list(self._rows("WHERE serial_number = ?", (str(serial),)))
        return found[0] if found else None

    def find_by_public_key(self, public_key: PublicKeyTypes) -> list[CertRecord]:
        """Every certificate issued for ``public_key`` (the reconciliation search)."""
        wanted = _spki(public_key)
        return [r for r in self._rows() if _spki(r.certificate.public_key()) == wanted]

    def count(self) -> int:
        if not self.path.exists():
            raise CertDBError(f"certdb not found: {self.path}")
        uri = f"file:{self.path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=self._timeout)) as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM certificates").fetchone()
        return int(n)
