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

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connector.ca._certdb_base import (
    CERTDB_SCHEMA,
    CHUNK,
    COLUMNS,
    CertDB,
    CertDBAuthError,
    CertDBError,
    CertDBUnavailableError,
    CertRecord,
    Row,
    create_certdb,
)

__all__ = [
    "CERTDB_SCHEMA",
    "CertDB",
    "CertDBAuthError",
    "CertDBError",
    "CertDBUnavailableError",
    "CertRecord",
    "PostgresCertDB",
    "Row",
    "SqliteCertDB",
    "create_certdb",
    "open_certdb",
    "redact_dsn",
]


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
                rows = conn.execute(f"SELECT {COLUMNS} FROM certificates {where}", params)  # noqa: S608
                return list(rows.fetchall())
        except sqlite3.Error as exc:
            raise CertDBError(f"cannot read certdb {self.path}: {exc}") from exc

    def _row_ids(self) -> list[Row]:
        return self._read("SELECT serial_number, authority_key_identifier FROM certificates", [()])

    def _rows_by_serial(self, serials: Sequence[str]) -> list[Row]:
        chunks = [tuple(serials[i : i + CHUNK]) for i in range(0, len(serials), CHUNK)]
        marks = {len(chunk): ",".join("?" * len(chunk)) for chunk in chunks}
        rows: list[Row] = []
        for size in sorted(marks):
            query = f"SELECT {COLUMNS} FROM certificates WHERE serial_number IN ({marks[size]})"  # noqa: S608 - placeholders only
            rows += self._read(query, [chunk for chunk in chunks if len(chunk) == size])
        return rows

    def _read(self, query: str, param_sets: Sequence[tuple[object, ...]]) -> list[Row]:
        try:
            with closing(self._connect()) as conn:
                return [row for params in param_sets for row in conn.execute(query, params)]
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

    def _row_ids(self) -> list[Row]:
        return self._query("SELECT serial_number, authority_key_identifier FROM certificates", ())

    def _rows_by_serial(self, serials: Sequence[str]) -> list[Row]:
        query = f"SELECT {COLUMNS} FROM certificates WHERE serial_number = ANY(%s)"  # noqa: S608 - constant columns
        chunks = [serials[i : i + CHUNK] for i in range(0, len(serials), CHUNK)]
        return self._query_each(query, [([s.encode() for s in chunk],) for chunk in chunks])

    def _query_each(self, query: str, param_sets: Sequence[tuple[object, ...]]) -> list[Row]:
        """``query`` once per parameter set, on one connection."""
        try:
            with self._connect() as conn:
                return [
                    row for params in param_sets for row in conn.execute(query.encode(), params)
                ]
        except psycopg.Error as exc:
            raise self._classify(exc) from None

    def _select(self, status: str | None, serial: int | None) -> list[Row]:
        base = f"SELECT {COLUMNS} FROM certificates"  # noqa: S608 - constant columns
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
