"""Read-only access to a CFSSL certdb: PostgreSQL over the network, or a local SQLite file.

CFSSL has no search API, so reconciliation and CRL building read the CA's
own database, never write it. The CA's database lives on the CA's host;
connectors reach it over TCP as a read-only role (SELECT on ``certificates``)::

    db = PostgresCertDB("postgresql://pfxha_reader@ca1:5432/certdb_primary",
                        password_file=Path("/run/credentials/.../certdb-primary.password"))
    db.ping()                                  # raises CertDBError if it cannot answer
    for record in db.find_by_public_key(key.public_key()):
        print(record.serial, record.status)
    revoked = db.records(status="revoked")

    SqliteCertDB(Path("runs/cfssl/primary/certdb.sqlite"))    # same API, same host only
    open_certdb("postgresql://...", password_file=...)          # by the source's shape

Every call opens its own connection with a short connect timeout and a
statement timeout, in a read-only transaction: a certdb that is down costs a
bounded wait and never a wedged thread. The password is read from its file
at each connection (rotation needs no restart) and never appears in a
message. ``last_error`` / ``last_ok`` say how the last call went (health).

Errors (all :class:`CertDBError`):

    CertDBError                 missing schema, corrupt row, unreadable file
    ├── CertDBUnavailableError  cannot connect, timed out (try again later)
    └── CertDBAuthError         credentials refused, or the role may not SELECT

What the Debian CFSSL 1.2 build stores (measured): ``serial_number`` is the
decimal serial as text (bytea in PostgreSQL), ``authority_key_identifier`` is
empty, ``status`` is ``good`` or ``revoked``, ``reason`` the RFC 5280 code,
``expiry`` a timestamp, ``revoked_at`` a timestamp or the zero time
``0001-01-01 00:00:00+00``.
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

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "CERTDB_SCHEMA",
    "CertDB",
    "CertDBAuthError",
    "CertDBError",
    "CertDBUnavailableError",
    "CertRecord",
    "PostgresCertDB",
    "SqliteCertDB",
    "create_certdb",
    "open_certdb",
    "redact_dsn",
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

_COLUMNS = "serial_number, authority_key_identifier, status, reason, expiry, revoked_at, pem"

Row = Sequence[object]
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


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class CertDB:
    """A read-only view of one CA's certdb (the backends say how rows are fetched)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_error: CertDBError | None = None
        self.last_ok: float | None = None

    @property
    def source(self) -> str:
        """Where the rows come from, fit for logs (never a password)."""
        raise NotImplementedError

    def _select(self, status: str | None, serial: int | None) -> list[Row]:
        """Rows of ``certificates`` (``_COLUMNS`` order), optionally filtered."""
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
        """Per key, every certificate issued for it: one read of the table for them all.

        A takeover searches every intent the old leader left in flight; reading and
        parsing the whole table once per intent made that the slowest step.
        """
        wanted: dict[bytes, list[int]] = {}
        for index, key in enumerate(keys):
            wanted.setdefault(_spki(key), []).append(index)
        found: list[list[CertRecord]] = [[] for _ in keys]
        if not wanted:
            return found
        for record in self.records():
            for index in wanted.get(_spki(record.certificate.public_key()), ()):
                found[index].append(record)
        return found

    def count(self) -> int:
        return self._recorded(self._count)

    def ping(self) -> None:
        """Raise :class:`CertDBError` unless the certdb answers a read of ``certificates``."""
        self._recorded(self._count)


class SqliteCertDB(CertDB):
    """A CFSSL SQLite certdb file opened read-only (``mode=ro``): only on the CA's own host."""

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self._timeout = timeout

    @property
    def source(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise CertDBError(f"certdb not found: {self.path}")
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self._timeout)

    def _select(self, status: str | None, serial: int | None) -> list[Row]:
        where: str = ""
        params: tuple[str, ...] = ()
        if status is not None:
            where, params = "WHERE status = ?", (status,)
        elif serial is not None:
            where, params = "WHERE serial_number = ?", (str(serial),)
        try:
            with closing(self._connect()) as conn:
                # ``where`` is one of the literals above, never caller input.
                rows = conn.execute(f"SELECT {_COLUMNS} FROM certificates {where}", params)  # noqa: S608
                return list(rows.fetchall())
        except sqlite3.Error as exc:
            raise CertDBError(f"cannot read certdb {self.path}: {exc}") from exc

    def _count(self) -> int:
        try:
            with closing(self._connect()) as conn:
                (n,) = conn.execute("SELECT COUNT(*) FROM certificates").fetchone()
        except sqlite3.Error as exc:
            raise CertDBError(f"cannot read certdb {self.path}: {exc}") from exc
        return int(n)


def redact_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/db`` from any libpq DSN, without a password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable certdb DSN>"
    user = parts.get("user", "")
    host = parts.get("host", "")
    port = parts.get("port", "5432")
    db = parts.get("dbname", "")
    return f"postgresql://{user}{'@' if user else ''}{host}:{port}/{db}"


# libpq words that mean "your credentials", not "the server is away".
_AUTH_WORDS = ("password authentication failed", "no password supplied", "authentication")
_AUTH_SQLSTATES = {"28000", "28P01", "42501"}


class PostgresCertDB(CertDB):
    """A CFSSL PostgreSQL certdb read over TCP as a read-only role.

    ``connect_timeout`` is whole seconds (libpq's rule, at least 2);
    ``statement_timeout`` bounds each query.
    """

    def __init__(
        self,
        dsn: str,
        *,
        password_file: Path | None = None,
        connect_timeout: int = 2,
        statement_timeout: float = 3.0,
        application_name: str = "pfxha-connector",
    ) -> None:
        super().__init__()
        try:
            parts = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise CertDBError(f"certdb DSN is not a libpq connection string: {exc}") from None
        if parts.get("password"):
            raise CertDBError("certdb DSN must not carry a password: use a password file")
        self.dsn = dsn
        # Read on every turn of the agent's loop (its reconcile state): libpq parsing
        # costs about 50 us, so it is done once.
        self._source = redact_dsn(dsn)
        self.password_file = Path(password_file) if password_file is not None else None
        self.connect_timeout = max(2, int(connect_timeout))
        self.statement_timeout = statement_timeout
        self.application_name = application_name

    @property
    def source(self) -> str:
        return self._source

    def _password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise CertDBAuthError(
                f"cannot read the certdb password file {self.password_file}: {exc.strerror or exc}"
            ) from None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        millis = max(1, int(self.statement_timeout * 1000))
        settings: dict[str, str | int] = {
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
            "options": f"-c statement_timeout={millis} -c default_transaction_read_only=on",
        }
        password = self._password()
        if password is not None:
            settings["password"] = password
        return psycopg.connect(make_conninfo(self.dsn, **settings))

    def _classify(self, exc: psycopg.Error) -> CertDBError:
        message = " ".join(str(exc).split())
        where = self.source
        sqlstate = getattr(exc, "sqlstate", None)
        lowered = message.lower()
        if sqlstate in _AUTH_SQLSTATES or any(w in lowered for w in _AUTH_WORDS):
            return CertDBAuthError(f"certdb {where} refused us: {message}")
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return CertDBUnavailableError(f"certdb {where} timed out: {message}")
        if isinstance(exc, psycopg.OperationalError):
            return CertDBUnavailableError(f"certdb {where} unreachable: {message}")
        return CertDBError(f"cannot read certdb {where}: {message}")

    def _query(self, query: str, params: tuple[object, ...]) -> list[Row]:
        try:
            with self._connect() as conn:
                return list(conn.execute(query.encode(), params).fetchall())
        except psycopg.Error as exc:
            raise self._classify(exc) from None

    def _select(self, status: str | None, serial: int | None) -> list[Row]:
        base = f"SELECT {_COLUMNS} FROM certificates"  # noqa: S608 - constant columns
        if status is not None:
            return self._query(base + " WHERE status = %s", (status.encode(),))
        if serial is not None:
            return self._query(base + " WHERE serial_number = %s", (str(serial).encode(),))
        return self._query(base, ())

    def _count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM certificates", ())
        return int(str(rows[0][0]))


def open_certdb(
    source: str | Path,
    *,
    password_file: Path | str | None = None,
    connect_timeout: int = 2,
    statement_timeout: float = 3.0,
) -> CertDB:
    """A :class:`PostgresCertDB` for a ``postgres://``/``postgresql://`` DSN, else SQLite."""
    text = str(source)
    if text.startswith(("postgres://", "postgresql://")) or "dbname=" in text:
        return PostgresCertDB(
            text,
            password_file=Path(password_file) if password_file else None,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
    return SqliteCertDB(Path(text))
