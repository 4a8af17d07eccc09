"""A database from before user-scoped profiles gains their columns at start, rows kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chaos.service.db import ADDED_COLUMNS, Database


def test_an_older_database_gains_the_added_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE profiles (id TEXT PRIMARY KEY, key_type TEXT NOT NULL, "
        "template TEXT NOT NULL, validity_days INTEGER NOT NULL, "
        "renewal_threshold_percent INTEGER NOT NULL, subject_template TEXT NOT NULL, "
        "san_templates TEXT NOT NULL, created_at TEXT NOT NULL);"
        "INSERT INTO profiles VALUES ('vpn', 'p256', 'user-auth', 30, 20, 'CN=x', '[]', 't');"
        "CREATE TABLE requests (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
        "device_id TEXT NOT NULL, profile_id TEXT NOT NULL, kind TEXT NOT NULL, "
        "replaces TEXT, state TEXT NOT NULL, reason TEXT, cancelled TEXT, "
        "created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
        "INSERT INTO requests(id, seq, device_id, profile_id, kind, state, created_at, "
        "updated_at) VALUES ('r1', 1, 'd1', 'vpn', 'new', 'pending', 't', 't');"
    )
    old.commit()
    old.close()

    db = Database(path)
    Database(path).close()  # a second start finds nothing to add
    for table, column, _ in ADDED_COLUMNS:
        assert column in {r["name"] for r in db.query(f"PRAGMA table_info({table})")}
    (profile,) = db.query("SELECT id, scope FROM profiles")
    (request,) = db.query("SELECT id, scope, user_id, escrow FROM requests")
    assert tuple(profile) == ("vpn", "device")
    assert tuple(request) == ("r1", "device", None, None)
    db.close()
