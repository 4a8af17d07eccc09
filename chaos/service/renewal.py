"""Service-initiated renewal: queue a new request for certificates past their threshold.

    with store.db.transaction() as tx:
        queued = scan_renewals(store, tx, as_of=dt.datetime.now(dt.UTC))

The old certificate stays the device's until the renewal is installed; then
it is revoked as ``superseded`` and deleted from the device (device API).
A background thread in the app runs the scan periodically; the admin API
runs it on demand, optionally "as of" a later instant (a lab clock).

A user-scoped certificate is renewed once for all of the user's devices; the
one it replaces is retired (revoked ``superseded``, kept decrypt-only) once
every active device of the user installed the renewal, or once
``StoreSettings.user_renewal_deadline_s`` passed since it was issued (this
scan applies the deadline).
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from chaos.service.rules import renewal_due
from chaos.service.store import LIVE, Store
from chaos.service.user_certs import finish_renewals, targeted_users

__all__ = ["scan_renewals"]


def scan_renewals(store: Store, tx: sqlite3.Connection, as_of: dt.datetime) -> int:
    rows = tx.execute(
        "SELECT r.id, r.device_id, r.profile_id, r.not_before, r.not_after, r.scope, r.user_id, "
        "r.escrow, p.renewal_threshold_percent FROM requests r "
        "JOIN profiles p ON p.id = r.profile_id "
        "WHERE r.state IN ('delivered', 'installed') AND r.cancelled IS NULL "
        "AND r.kind != 'imported' "  # an imported PFX is replaced by the admin, not renewed
        "AND r.revocation IS NULL ORDER BY r.seq"
    ).fetchall()
    # A user-scoped row's device_id is its user id: both kinds of slot in one set.
    targeted = store.targeted(tx) | targeted_users(tx)
    queued = 0
    for row in rows:
        if (row["device_id"], row["profile_id"]) not in targeted:
            continue
        if row["scope"] == "user" and row["escrow"] != "current":
            continue
        due = renewal_due(
            dt.datetime.fromisoformat(row["not_before"]),
            dt.datetime.fromisoformat(row["not_after"]),
            row["renewal_threshold_percent"],
            as_of,
        )
        if not due:
            continue
        already = tx.execute(
            f"SELECT 1 FROM requests WHERE replaces = ? AND {LIVE}",  # noqa: S608
            (row["id"],),
        ).fetchone()
        if already is None:
            store.insert_request(
                tx,
                row["device_id"],
                row["profile_id"],
                kind="renewal",
                replaces=row["id"],
                user_id=row["user_id"],
            )
            queued += 1
    finish_renewals(
        store,
        tx,
        deadline_s=store.settings.user_renewal_deadline_s,
        now_s=as_of.timestamp(),
    )
    return queued
