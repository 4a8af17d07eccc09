"""The service's SQLite store: WAL, ``synchronous=FULL``, one writer at a time.

Every API call runs in exactly one transaction, committed before the answer
is sent, so an acknowledged change survives a crash of the service and a
refused call changes nothing::

    db = Database(Path("service.db"))
    with db.transaction() as tx:          # BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error)
        tx.execute("INSERT INTO users(id, name, upn, email) VALUES (?,?,?,?)", row)
    rows = db.query("SELECT * FROM users")

A single connection behind one lock is plenty for a lab service and makes the
order of writes the order of commits (what the invariant checkers read).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA", "Database"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY, key_type TEXT NOT NULL, template TEXT NOT NULL,
    validity_days INTEGER NOT NULL, renewal_threshold_percent INTEGER NOT NULL,
    subject_template TEXT NOT NULL, san_templates TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, upn TEXT NOT NULL, email TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memberships (
    group_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (group_id, user_id));
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'active',
    certificate_pem TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    id TEXT PRIMARY KEY, profile_id TEXT NOT NULL, group_id TEXT NOT NULL,
    UNIQUE (profile_id, group_id));
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, device_id TEXT NOT NULL,
    profile_id TEXT NOT NULL, kind TEXT NOT NULL, replaces TEXT,
    state TEXT NOT NULL, reason TEXT, cancelled TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    lease_epoch INTEGER, lease_at REAL,
    intent_epoch INTEGER, intent_spki_sha256 TEXT, intent_public_key_pem TEXT,
    intent_at TEXT, connector TEXT,
    envelope BLOB, serial TEXT, ca_name TEXT, epoch INTEGER, certificate_pem TEXT,
    not_before TEXT, not_after TEXT, issued_at TEXT, delivered_at TEXT, installed_at TEXT,
    revocation TEXT, device_delete TEXT, device_deleted_at TEXT);
CREATE INDEX IF NOT EXISTS requests_state ON requests(state, seq);
CREATE INDEX IF NOT EXISTS requests_slot ON requests(device_id, profile_id);
CREATE TABLE IF NOT EXISTS revocations (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, request_id TEXT NOT NULL,
    serial TEXT NOT NULL, ca_name TEXT NOT NULL, reason TEXT NOT NULL, event TEXT NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL, done_at TEXT, done_epoch INTEGER,
    done_by TEXT, UNIQUE (request_id));
CREATE INDEX IF NOT EXISTS revocations_state ON revocations(state, seq);
CREATE TABLE IF NOT EXISTS connectors (
    name TEXT PRIMARY KEY, epoch INTEGER NOT NULL, health TEXT NOT NULL,
    details TEXT NOT NULL, last_seen REAL NOT NULL, last_seen_at TEXT NOT NULL,
    registered_at TEXT);
CREATE TABLE IF NOT EXISTS stale_rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, name TEXT NOT NULL,
    epoch INTEGER NOT NULL, highest_epoch INTEGER NOT NULL, endpoint TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, epoch INTEGER NOT NULL,
    connector TEXT NOT NULL, spki_sha256 TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS intents_request ON intents(request_id);
CREATE TABLE IF NOT EXISTS revoked_connectors (
    name TEXT PRIMARY KEY, at TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL,
    expires_at REAL NOT NULL, used_at TEXT);
CREATE TABLE IF NOT EXISTS connector_certificates (
    serial TEXT PRIMARY KEY, name TEXT NOT NULL, issued_at TEXT NOT NULL,
    not_after TEXT NOT NULL, via TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL,
    subject TEXT NOT NULL, detail TEXT NOT NULL);
"""


class Database:
    """One SQLite connection in WAL mode; all access serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsynced) before we answer; NORMAL could
        # lose the last acknowledged transactions on power loss.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE; COMMIT on success, ROLLBACK on any exception (which propagates)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def meta_get(self, conn: sqlite3.Connection, key: str, default: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row["value"]) if row is not None else default

    def meta_set(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def next_seq(self, conn: sqlite3.Connection) -> int:
        """A strictly increasing number: the service's global order of queued work."""
        value = int(self.meta_get(conn, "seq", "0")) + 1
        self.meta_set(conn, "seq", str(value))
        return value
