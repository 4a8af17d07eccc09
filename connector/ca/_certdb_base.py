"""The certdb reader's parts shared by its backends: rows, errors, the search.

    class MyCertDB(CertDB):          # a backend says how rows are fetched
        def _select(self, status, serial): ...
        def _row_ids(self): ...
        def _rows_by_serial(self, serials): ...
        def _count(self): ...

:mod:`connector.ca._certdb` has the backends (SQLite, PostgreSQL) and the
public surface; see its docstring.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from connector.ca._certdb_index import KeyIndex, RowId, key_digest

__all__ = [
    "CERTDB_SCHEMA",
    "CHUNK",
    "COLUMNS",
    "CertDB",
    "CertDBAuthError",
    "CertDBError",
    "CertDBUnavailableError",
    "CertRecord",
    "Row",
    "create_certdb",
]

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

COLUMNS = "serial_number, authority_key_identifier, status, reason, expiry, revoked_at, pem"

Row = Sequence[object]
# Rows fetched per query by serial number: SQLite takes at most 999 parameters
# (older builds), and each PostgreSQL query stays well inside statement_timeout.
CHUNK = 500
T = TypeVar("T")


class CertDBError(RuntimeError):
    """The certdb could not be read (unexpected schema, corrupt row, unreadable file)."""

    kind = "error"


class CertDBUnavailableError(CertDBError):
    """The certdb did not answer (refused, unreachable, timed out): try again later."""

    kind = "unreachable"


class CertDBAuthError(CertDBError):
    """The certdb refused our credentials, or our role may not read ``certificates``."""

    kind = "auth"


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
    """Create the SQLite schema CFSSL expects (idempotent): the Debian build does not migrate.

    The database is switched to WAL mode (a persistent property of the file):
    readers never block the CA's inserts, which also cost fewer fsyncs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(CERTDB_SCHEMA)
        conn.commit()


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("ascii", errors="replace")
    return "" if value is None else str(value)


def _timestamp(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        if value.year <= 1:
            return None
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
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


def _row_id(row: Row) -> RowId:
    """(serial_number, authority_key_identifier) of a row, as text: its primary key."""
    return _text(row[0]), _text(row[1])


class CertDB:
    """A read-only view of one CA's certdb (the backends say how rows are fetched)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_error: CertDBError | None = None
        self.last_ok: float | None = None
        self._index = KeyIndex()

    @property
    def source(self) -> str:
        """Where the rows come from, fit for logs (never a password)."""
        raise NotImplementedError

    def _select(self, status: str | None, serial: int | None) -> list[Row]:
        """Rows of ``certificates`` (``COLUMNS`` order), optionally filtered."""
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError

    def _recorded(self, call: Callable[[], T]) -> T:
        try:
            result = call()
        except CertDBError as exc:
            with self._lock:
                self.last_error = exc
            raise
        with self._lock:
            self.last_error = None
            self.last_ok = time.monotonic()
        return result

    def _decode(self, rows: list[Row]) -> list[CertRecord]:
        records = []
        for serial, aki, status, reason, expiry, revoked_at, pem in rows:
            try:
                raw = pem if isinstance(pem, bytes) else _text(pem).encode()
                records.append(
                    CertRecord(
                        serial=int(_text(serial)),
                        aki=_text(aki),
                        status=_text(status),
                        reason=int(str(reason or 0)),
                        expiry=_timestamp(expiry),
                        revoked_at=_timestamp(revoked_at),
                        certificate=x509.load_pem_x509_certificate(raw),
                    )
                )
            except ValueError as exc:
                raise CertDBError(f"corrupt row in {self.source}: {exc}") from exc
        return records

    def records(self, status: str | None = None) -> list[CertRecord]:
        """Every certificate the CA recorded, optionally only ``good`` or ``revoked`` ones."""
        return self._decode(self._recorded(lambda: self._select(status, None)))

    def by_serial(self, serial: int) -> CertRecord | None:
        found = self._decode(self._recorded(lambda: self._select(None, serial)))
        return found[0] if found else None

    def find_by_public_key(self, public_key: PublicKeyTypes) -> list[CertRecord]:
        """Every certificate issued for ``public_key`` (the reconciliation search)."""
        return self.find_by_public_keys([public_key])[0]

    def find_by_public_keys(self, keys: Sequence[PublicKeyTypes]) -> list[list[CertRecord]]:
        """Per key, every certificate issued for it, in one search for them all.

        A takeover searches every intent the old leader left in flight. Each
        row's certificate is parsed once per process (:mod:`._certdb_index`): a
        search lists the table's row ids, then fetches the rows it has never
        seen and the rows it knows hold one of the keys, nothing else.
        """
        wanted: dict[bytes, list[int]] = {}
        for index, key in enumerate(keys):
            wanted.setdefault(key_digest(key), []).append(index)
        found: list[list[CertRecord]] = [[] for _ in keys]
        if not wanted:
            return found
        for record, digest in self._recorded(lambda: self._search(set(wanted))):
            for index in wanted[digest]:
                found[index].append(record)
        return found

    @property
    def indexed_rows(self) -> int:
        """Rows whose key this process has parsed and remembers (about 400 bytes each)."""
        return len(self._index)

    def learn_new(self) -> int:
        """Parse the rows added since the last search (a standby's warm-up); how many.

        A standby that does this while it waits makes its first search as a new
        leader (a takeover's) read only what was issued since.
        """
        before = len(self._index)
        self._recorded(lambda: self._search(set()))
        return len(self._index) - before

    def _search(self, digests: set[bytes]) -> list[tuple[CertRecord, bytes]]:
        listed = {_row_id(row) for row in self._row_ids()}
        unseen = self._index.unknown(listed)
        fetch = unseen | (self._index.rows_for(digests) & listed)
        if not fetch:
            return []
        # Most rows unseen (a first search): one plain read beats many by serial.
        candidates = (
            self._select(None, None)
            if 2 * len(fetch) > len(listed)
            else self._rows_by_serial(sorted({serial for serial, _ in fetch}))
        )
        rows = [row for row in candidates if _row_id(row) in fetch]
        learnt: dict[RowId, bytes] = {}
        matches = []
        for row, record in zip(rows, self._decode(rows), strict=True):
            digest = key_digest(record.certificate.public_key())
            learnt[_row_id(row)] = digest
            if digest in digests:
                matches.append((record, digest))
        self._index.learn_all(learnt)
        return matches

    def _row_ids(self) -> list[Row]:
        """(serial_number, authority_key_identifier) of every row: no PEM."""
        raise NotImplementedError

    def _rows_by_serial(self, serials: Sequence[str]) -> list[Row]:
        """Rows (``COLUMNS`` order) with these serial numbers, read in chunks."""
        raise NotImplementedError

    def count(self) -> int:
        return self._recorded(self._count)

    def ping(self) -> None:
        """Raise :class:`CertDBError` unless the certdb answers a read of ``certificates``."""
        self._recorded(self._count)
