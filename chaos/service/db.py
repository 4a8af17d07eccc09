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

The fencing state is one row of its own (``fence``): the highest epoch seen,
its holder, and the epoch-advance budget. Triggers make SQLite itself refuse
any update that would lower the highest epoch and any delete of the row, so no
code path (revocation, an admin action, a restart) can move it backwards::

    epoch, holder = db.fence(tx)
    tx.execute("UPDATE fence SET highest_epoch = MAX(highest_epoch, ?) WHERE id = 1", (e,))

The database file is created 0600 (SQLite gives its WAL and SHM files the
same mode) in a directory that is made 0700.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["ADDED_COLUMNS", "SCHEMA", "Database", "secure_location"]

log = logging.getLogger("pfxha.service")

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
CREATE TABLE IF NOT EXISTS fence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    highest_epoch INTEGER NOT NULL CHECK (highest_epoch >= 0),
    holder TEXT NOT NULL DEFAULT '',
    budget REAL NOT NULL, budget_at REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS fence_never_decreases
    BEFORE UPDATE OF highest_epoch ON fence WHEN NEW.highest_epoch < OLD.highest_epoch
    BEGIN SELECT RAISE(ABORT, 'the highest epoch never decreases'); END;
CREATE TRIGGER IF NOT EXISTS fence_never_deleted BEFORE DELETE ON fence
    BEGIN SELECT RAISE(ABORT, 'the fence row is never deleted'); END;
CREATE TABLE IF NOT EXISTS epoch_acceptances (
    name TEXT NOT NULL, epoch INTEGER NOT NULL, at TEXT NOT NULL, reason TEXT NOT NULL,
    used_at TEXT, PRIMARY KEY (name, epoch));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL,
    subject TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_copies (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, request_id TEXT NOT NULL,
    device_id TEXT NOT NULL, user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
    usage TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, delivered_at TEXT, installed_at TEXT,
    device_delete TEXT, device_deleted_at TEXT, UNIQUE (request_id, device_id));
CREATE INDEX IF NOT EXISTS user_copies_device ON user_copies(device_id, seq);
"""

# Columns added after the first release, as (table, column, declaration): a
# database from before gains them at start (columns are only ever added).
ADDED_COLUMNS = (
    # Issue 15: user-scoped profiles. ``requests.scope = 'user'`` rows are one
    # certificate per (user, profile): ``device_id`` then holds the user id (the
    # subject the certificate names) and ``escrow`` is current | history | withdrawn.
    ("profiles", "scope", "TEXT NOT NULL DEFAULT 'device'"),
    ("requests", "scope", "TEXT NOT NULL DEFAULT 'device'"),
    ("requests", "user_id", "TEXT"),
    ("requests", "escrow", "TEXT"),
    # Issue 15 item 5: ``source = 'imported'`` profiles hold PFX files an admin
    # imported (Intune's "PKCS imported"): never requested from a CA.
    ("profiles", "source", "TEXT NOT NULL DEFAULT 'ca'"),
    # The answer that leased a request (a poll's lease sequence): a poll that did not
    # receive it takes the request again rather than wait for the lease to expire.
    ("requests", "lease_seq", "INTEGER"),
    # An intent's key and when it was recorded (the service's clock): a new leader is
    # told the keys of recent intents no longer current, whose late certificates it
    # revokes (chaos/service/takeover.py).
    ("intents", "public_key_pem", "TEXT"),
    ("intents", "at_s", "REAL"),
    # 1: the certificate delivered for this intent's key came after another CA's answer
    # was lost, so that CA may sign the key late (chaos/service/takeover.py).
    ("intents", "uncertain", "INTEGER NOT NULL DEFAULT 0"),
)
INDEXES_ON_ADDED = (
    "CREATE INDEX IF NOT EXISTS requests_user ON requests(user_id, profile_id)",
    "CREATE INDEX IF NOT EXISTS intents_at ON intents(at_s)",
)


class Database:
    """One SQLite connection in WAL mode; all access serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        secure_location(path)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsynced) before we answer; NORMAL could
        # lose the last acknowledged transactions on power loss.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._conn.executescript(SCHEMA)
        with self.transaction() as tx:
            self._add_columns(tx)
            self._seed_fence(tx)

    @staticmethod
    def _add_columns(tx: sqlite3.Connection) -> None:
        """Bring an older database up to :data:`ADDED_COLUMNS` (existing rows get the default)."""
        for table, column, declaration in ADDED_COLUMNS:
            present = {r["name"] for r in tx.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        for statement in INDEXES_ON_ADDED:
            tx.execute(statement)

    def _seed_fence(self, tx: sqlite3.Connection) -> None:
        """Create the fence row once; a database from before it had the epoch in ``meta``
        (it never goes below that, nor below any epoch a connector registered). The
        advance budget was last spent at time 0: it is full."""
        if tx.execute("SELECT 1 FROM fence WHERE id = 1").fetchone() is not None:
            return
        legacy = int(self.meta_get(tx, "highest_epoch", "0"))
        registered = tx.execute("SELECT COALESCE(MAX(epoch), 0) AS e FROM connectors").fetchone()
        tx.execute(
            "INSERT INTO fence(id, highest_epoch, holder, budget, budget_at) "
            "VALUES (1, ?, ?, 0, 0)",
            (max(legacy, int(registered["e"])), self.meta_get(tx, "holder", "")),
        )

    def fence(self, conn: sqlite3.Connection) -> tuple[int, str | None]:
        """The highest epoch ever seen and the connector that registered it."""
        row = conn.execute("SELECT highest_epoch, holder FROM fence WHERE id = 1").fetchone()
        return int(row["highest_epoch"]), (str(row["holder"]) or None)

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


def secure_location(path: Path) -> None:
    """Make ``path``'s directory 0700 and ``path`` (created if missing) 0600.

    SQLite creates ``-wal`` and ``-shm`` with the database file's mode, so they
    are 0600 too; any that exist already are tightened here as well.
    """
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        log.warning("tightening %s to mode 0700 (it holds the service database)", directory)
        directory.chmod(0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)
