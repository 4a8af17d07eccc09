"""One CA's certdb on the lab's PostgreSQL: its schema, its roles and their grants.

    access = certdb_access_for("primary", host, port, password_file)  # names, no I/O
    create_certdb_objects(server.admin, access)   # database, schema, roles, grants
    access.reader_dsn             # postgresql://pfxha_reader@HOST:PORT/certdb_primary
    access.cfssl_db_config()      # {"driver": "postgres", "data_source": ...} for cfssl serve

One database per issuing CA (``certdb_<ca>``), owned by the bootstrap
superuser; the CA's writer role ``cfssl_<ca>`` may SELECT, INSERT and UPDATE
``certificates`` and change ``ocsp_responses`` (no DELETE of a certificate,
no DDL), and one read-only role ``pfxha_reader`` for connectors, the CRL
server and the drill's checkers may only CONNECT and SELECT ``certificates``.
PUBLIC loses CONNECT everywhere. Everything is idempotent: a second call
changes nothing but the roles' passwords, read again from their files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "CERTDB_PG_SCHEMA",
    "READER_ROLE",
    "CertDBAccess",
    "certdb_access_for",
    "certdb_ident",
    "create_certdb_objects",
]

READER_ROLE = "pfxha_reader"

# CFSSL's certdb/pg migration as of the Debian 1.2 build (goose "Up" of
# 001_CreateCertificates.sql): the columns its INSERT and UPDATE name.
CERTDB_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  ca_label                 bytea,
  status                   bytea NOT NULL,
  reason                   int,
  expiry                   timestamptz,
  revoked_at               timestamptz,
  pem                      bytea NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE IF NOT EXISTS ocsp_responses (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  body                     bytea NOT NULL,
  expiry                   timestamptz,
  PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier)
    REFERENCES certificates(serial_number, authority_key_identifier)
);
"""


@dataclass(frozen=True)
class CertDBAccess:
    """One CA's certdb on the lab's PostgreSQL: the database, its two roles, their secrets."""

    ca: str
    host: str
    port: int
    database: str
    writer: str
    writer_password_file: Path
    reader: str
    reader_password_file: Path

    @property
    def reader_dsn(self) -> str:
        """What a connector's ``certdb_dsn`` says (no password: that is in the file)."""
        return f"postgresql://{self.reader}@{self.host}:{self.port}/{self.database}"

    @property
    def writer_dsn(self) -> str:
        return f"postgresql://{self.writer}@{self.host}:{self.port}/{self.database}"

    def cfssl_db_config(self) -> dict[str, str]:
        """``cfssl serve -db-config`` (lib/pq): the writer's password is in it, keep it 0600."""
        password = self.writer_password_file.read_text().strip()
        return {
            "driver": "postgres",
            "data_source": (
                f"postgres://{self.writer}:{password}@{self.host}:{self.port}/"
                f"{self.database}?sslmode=disable&connect_timeout=5"
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "ca": self.ca,
            "dsn": self.reader_dsn,
            "password_file": str(self.reader_password_file),
            "writer_dsn": self.writer_dsn,
            "writer_password_file": str(self.writer_password_file),
        }


def certdb_access_for(
    ca: str, host: str, port: int, password_file: Callable[[str], Path]
) -> CertDBAccess:
    """CA ``ca``'s database and roles; ``password_file(role)`` is that role's 0600 file."""
    ident = certdb_ident(ca)
    return CertDBAccess(
        ca=ca,
        host=host,
        port=port,
        database=f"certdb_{ident}",
        writer=f"cfssl_{ident}",
        writer_password_file=password_file(f"cfssl_{ident}"),
        reader=READER_ROLE,
        reader_password_file=password_file(READER_ROLE),
    )


def create_certdb_objects(admin: Callable[[str], psycopg.Connection], access: CertDBAccess) -> None:
    """The database, schema, roles and grants of ``access`` (``admin(db)``: a superuser)."""
    with admin("postgres") as conn:
        _ensure_role(conn, access.writer, access.writer_password_file)
        _ensure_role(conn, access.reader, access.reader_password_file)
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (access.database,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(access.database)))
        for db in ("postgres", "template1", access.database):
            conn.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db))
            )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
                sql.Identifier(access.database),
                sql.Identifier(access.writer),
                sql.Identifier(access.reader),
            )
        )
    with admin(access.database) as conn:
        conn.execute(CERTDB_PG_SCHEMA)
        w, r = sql.Identifier(access.writer), sql.Identifier(access.reader)
        for statement in (
            "REVOKE ALL ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO {w}, {r}",
            "REVOKE ALL ON certificates, ocsp_responses FROM PUBLIC",
            "GRANT SELECT, INSERT, UPDATE ON certificates TO {w}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ocsp_responses TO {w}",
            "GRANT SELECT ON certificates TO {r}",
        ):
            conn.execute(sql.SQL(statement).format(w=w, r=r))


def _ensure_role(conn: psycopg.Connection, role: str, password_file: Path) -> None:
    password = password_file.read_text().strip()
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )


def certdb_ident(name: str) -> str:
    """A CA name as a lower-case SQL identifier part (``eu-primary`` -> ``eu_primary``)."""
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name.lower())
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"ca_{cleaned}"
    return cleaned
