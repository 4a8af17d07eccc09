"""User-scoped certificates: one per (user, profile), escrowed, copied to every device.

The connector issues a user-scoped request like any other (intent, CA call,
upload, all fenced and reconciled): the request row's ``device_id`` holds the
user id, the subject the certificate names. The service keeps the uploaded
KRA envelope as the escrow copy and gives each of the user's devices its own
copy (``user_copies``), re-sealed to that device's management certificate at
check-in: N devices cost one CA call. The rules are :mod:`chaos.service.scope`::

    with store.db.transaction() as tx:
        queue_missing_users(store, tx, users=["ann"])      # one request per (user, profile)
        ensure_copies(store, tx, "ann-phone")               # at check-in: current + history
        counts = apply_event(store, tx, Event.BLOCK, devices=["ann-phone"], acted_on="ann-phone")

``requests.escrow`` of a user-scoped row: ``current`` (delivered as the key in
use), ``history`` (revoked or superseded, delivered as decrypt-only so old mail
still opens), ``withdrawn`` (the user is no longer targeted: nowhere).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence

from chaos.service.rules import Event, Outcome
from chaos.service.scope import Fate, rollover_finished, user_outcome
from chaos.service.store import LIVE, Store

__all__ = [
    "apply_event",
    "copy_deletions",
    "deliverable_copies",
    "ensure_copies",
    "finish_renewals",
    "mark_delivered",
    "queue_missing_users",
    "report_copy",
    "retire_to_history",
    "targeted_users",
    "users_of",
]

# A current user-scoped certificate that may be handed to the user's devices.
CURRENT = (
    "r.escrow = 'current' AND r.cancelled IS NULL AND r.revocation IS NULL "
    "AND r.state IN ('issued', 'delivered', 'installed')"
)
Counts = dict[str, int]


def _in(values: Sequence[str] | None) -> tuple[str | None, str | None]:
    if values is None:
        return None, None
    encoded = json.dumps(list(values))
    return encoded, encoded


def targeted_users(
    tx: sqlite3.Connection, users: Sequence[str] | None = None
) -> set[tuple[str, str]]:
    """Every (user, profile) of a user-scoped profile that targets an active user."""
    rows = tx.execute(
        "SELECT DISTINCT u.id AS user_id, a.profile_id FROM users u "
        "JOIN memberships m ON m.user_id = u.id "
        "JOIN assignments a ON a.group_id = m.group_id "
        "JOIN profiles p ON p.id = a.profile_id "
        "WHERE u.state = 'active' AND p.scope = 'user' "
        "AND (? IS NULL OR u.id IN (SELECT value FROM json_each(?)))",
        _in(users),
    ).fetchall()
    return {(r["user_id"], r["profile_id"]) for r in rows}


def users_of(tx: sqlite3.Connection, devices: Sequence[str] | None) -> list[str] | None:
    if devices is None:
        return None
    rows = tx.execute(
        "SELECT DISTINCT user_id FROM devices WHERE id IN (SELECT value FROM json_each(?))",
        (_in(devices)[0],),
    )
    return [r["user_id"] for r in rows]


def _active_devices(tx: sqlite3.Connection, user_id: str) -> set[str]:
    rows = tx.execute("SELECT id FROM devices WHERE user_id = ? AND state = 'active'", (user_id,))
    return {r["id"] for r in rows}


def _live_slots(tx: sqlite3.Connection, users: Sequence[str] | None) -> set[tuple[str, str]]:
    rows = tx.execute(
        f"SELECT user_id, profile_id FROM requests WHERE scope = 'user' AND {LIVE} "  # noqa: S608
        "AND (? IS NULL OR user_id IN (SELECT value FROM json_each(?)))",
        _in(users),
    )
    return {(r["user_id"], r["profile_id"]) for r in rows}


def _imported_profiles(tx: sqlite3.Connection) -> set[str]:
    """Profiles whose certificates an admin imports: nothing is ever requested for them."""
    return {r["id"] for r in tx.execute("SELECT id FROM profiles WHERE source = 'imported'")}


def queue_missing_users(store: Store, tx: sqlite3.Connection, users: Sequence[str] | None) -> int:
    """One request per targeted (user, profile) without a live one, once the user has an
    active device to hold it (no certificate is issued for nobody)."""
    queued = 0
    imported = _imported_profiles(tx)
    for user_id, profile_id in sorted(targeted_users(tx, users) - _live_slots(tx, users)):
        if profile_id not in imported and _active_devices(tx, user_id):
            store.insert_request(
                tx, user_id, profile_id, kind="new", replaces=None, user_id=user_id
            )
            queued += 1
    return queued


# -- delivery ----------------------------------------------------------------------


def ensure_copies(store: Store, tx: sqlite3.Connection, device_id: str) -> int:
    """Give an active device a copy of each current and history certificate of its user
    (a device enrolled later gets the same certificate and key, and the old keys)."""
    device = store.row(tx, "devices", device_id)
    if device["state"] != "active":
        return 0
    made = 0
    for user_id, profile_id in sorted(targeted_users(tx, [device["user_id"]])):
        rows = tx.execute(
            f"SELECT r.id, r.escrow FROM requests r WHERE r.scope = 'user' AND r.user_id = ? "  # noqa: S608
            f"AND r.profile_id = ? AND r.serial IS NOT NULL AND (({CURRENT}) "
            "OR r.escrow = 'history') ORDER BY r.seq",
            (user_id, profile_id),
        ).fetchall()
        for row in rows:
            usage = "current" if row["escrow"] == "current" else "decrypt-only"
            now = store.now_iso()
            made += tx.execute(
                "INSERT INTO user_copies(id, seq, request_id, device_id, user_id, profile_id, "
                "usage, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?) "
                "ON CONFLICT(request_id, device_id) DO NOTHING",
                (
                    store.new_id("cpy"),
                    store.db.next_seq(tx),
                    row["id"],
                    device_id,
                    user_id,
                    profile_id,
                    usage,
                    now,
                    now,
                ),
            ).rowcount
    return made


def deliverable_copies(tx: sqlite3.Connection, device_id: str) -> list[sqlite3.Row]:
    """Copies the device is to receive now: ``(id, request_id, profile_id, serial, usage)``."""
    return list(
        tx.execute(
            "SELECT c.id, c.request_id, c.profile_id, r.serial, c.usage FROM user_copies c "  # noqa: S608
            "JOIN requests r ON r.id = c.request_id JOIN devices d ON d.id = c.device_id "
            "WHERE c.device_id = ? AND d.state = 'active' AND c.state IN ('ready', 'delivered') "
            f"AND c.device_delete IS NULL AND ((c.usage = 'current' AND {CURRENT}) "
            "OR (c.usage = 'decrypt-only' AND r.escrow = 'history')) ORDER BY c.seq",
            (device_id,),
        )
    )


def mark_delivered(store: Store, tx: sqlite3.Connection, copy_ids: Iterable[str]) -> None:
    now = store.now_iso()
    for copy_id in copy_ids:
        tx.execute(
            "UPDATE user_copies SET state = 'delivered', delivered_at = COALESCE(delivered_at, ?), "
            "updated_at = ? WHERE id = ?",
            (now, now, copy_id),
        )
        tx.execute(
            "UPDATE requests SET state = 'delivered', delivered_at = COALESCE(delivered_at, ?), "
            "updated_at = ? WHERE id = (SELECT request_id FROM user_copies WHERE id = ?) "
            "AND state = 'issued'",
            (now, now, copy_id),
        )


def copy_deletions(tx: sqlite3.Connection, device_id: str) -> list[sqlite3.Row]:
    return list(
        tx.execute(
            "SELECT c.id, c.profile_id, r.serial FROM user_copies c "
            "JOIN requests r ON r.id = c.request_id "
            "WHERE c.device_id = ? AND c.device_delete = 'pending' ORDER BY c.seq",
            (device_id,),
        )
    )


class CopyReportError(Exception):
    """A report that does not fit the copy's state (the API answers 400)."""


def report_copy(
    store: Store, tx: sqlite3.Connection, copy: sqlite3.Row, status: str, reason: str | None
) -> str:
    """A device's report on its copy: installed, failed (this copy only) or deleted."""
    now = store.now_iso()
    if status == "deleted":
        if copy["device_delete"] not in ("pending", "done"):
            raise CopyReportError(f"copy {copy['id']} was not to be deleted")
        tx.execute(
            "UPDATE user_copies SET device_delete = 'done', "
            "device_deleted_at = COALESCE(device_deleted_at, ?) WHERE id = ?",
            (now, copy["id"]),
        )
        return str(copy["state"])
    if copy["state"] == status:
        return str(copy["state"])
    if copy["state"] != "delivered":
        raise CopyReportError(f"copy {copy['id']} is {copy['state']}, not delivered")
    if status == "failed":
        # One device failing to install does not make the shared certificate unused.
        tx.execute(
            "UPDATE user_copies SET state = 'failed', reason = ?, updated_at = ? WHERE id = ?",
            (f"device: {reason or 'install failed'}", now, copy["id"]),
        )
        return "failed"
    tx.execute(
        "UPDATE user_copies SET state = 'installed', installed_at = ?, updated_at = ? WHERE id = ?",
        (now, now, copy["id"]),
    )
    tx.execute(
        "UPDATE requests SET state = 'installed', installed_at = COALESCE(installed_at, ?), "
        "updated_at = ? WHERE id = ? AND state IN ('issued', 'delivered')",
        (now, now, copy["request_id"]),
    )
    finish_renewals(store, tx, request_id=copy["request_id"], deadline_s=float("inf"))
    return "installed"


# -- rollover, renewal and the revocation table ---------------------------------------


def retire_to_history(
    store: Store, tx: sqlite3.Connection, req: sqlite3.Row, event: Event, reason: str
) -> None:
    """Revoke ``req`` (an imported PFX: not at a CA) and keep its key, decrypt-only, on
    the user's active devices."""
    store.queue_revocation(tx, req, event, reason)
    now = store.now_iso()
    tx.execute(
        "UPDATE requests SET escrow = 'history', updated_at = ? WHERE id = ?", (now, req["id"])
    )
    tx.execute(
        "UPDATE user_copies SET usage = 'decrypt-only', state = 'ready', updated_at = ? "
        "WHERE request_id = ? AND state != 'withdrawn' AND device_delete IS NULL "
        "AND device_id IN (SELECT id FROM devices WHERE state = 'active')",
        (now, req["id"]),
    )


def finish_renewals(
    store: Store,
    tx: sqlite3.Connection,
    *,
    request_id: str | None = None,
    deadline_s: float,
    now_s: float | None = None,
) -> int:
    """Retire the certificate a user-scoped renewal replaces, once every active device of
    the user installed the renewal or ``deadline_s`` passed since it was issued."""
    rows = tx.execute(
        "SELECT n.id, n.user_id, n.issued_at, o.id AS old_id FROM requests n "  # noqa: S608
        "JOIN requests o ON o.id = n.replaces "
        f"WHERE n.scope = 'user' AND n.kind = 'renewal' AND {CURRENT.replace('r.', 'n.')} "
        "AND o.escrow = 'current' AND o.revocation IS NULL "
        "AND (? IS NULL OR n.id = ?) ORDER BY n.seq",
        (request_id, request_id),
    ).fetchall()
    finished = 0
    now = store.clock() if now_s is None else now_s
    for row in rows:
        installed = {
            r["device_id"]
            for r in tx.execute(
                "SELECT device_id FROM user_copies WHERE request_id = ? AND state = 'installed'",
                (row["id"],),
            )
        }
        waited = now - dt.datetime.fromisoformat(row["issued_at"]).timestamp()
        verdict = rollover_finished(
            installed=installed,
            expected=_active_devices(tx, row["user_id"]),
            waited_s=waited,
            deadline_s=deadline_s,
        )
        if verdict.done:
            old = store.row(tx, "requests", row["old_id"])
            retire_to_history(store, tx, old, Event.RENEWAL, "superseded")
            store.event(
                tx, "user-renewal-finished", row["id"], replaces=old["id"], why=verdict.reason
            )
            finished += 1
    return finished


def _device_event(
    store: Store, tx: sqlite3.Connection, event: Event, device_id: str, counts: Counts
) -> None:
    device = store.row(tx, "devices", device_id)
    outcome = user_outcome(event, store.current_mode(tx))
    assert outcome is not None  # the caller refused n/a events already
    held = tx.execute(
        "SELECT * FROM user_copies WHERE device_id = ? AND state != 'withdrawn' "
        "AND device_delete IS NULL",
        (device_id,),
    ).fetchall()
    compromised: list[str] = []
    if outcome.fate is Fate.ROLLOVER:
        compromised = sorted({c["request_id"] for c in held if c["delivered_at"] is not None})
    now = store.now_iso()
    for copy in held:
        if copy["delivered_at"] is None:
            tx.execute(
                "UPDATE user_copies SET state = 'withdrawn', reason = ?, updated_at = ? "
                "WHERE id = ?",
                (f"never delivered: {event.value}", now, copy["id"]),
            )
        elif outcome.delete_on_device:
            tx.execute(
                "UPDATE user_copies SET device_delete = 'pending', updated_at = ? WHERE id = ?",
                (now, copy["id"]),
            )
            counts["deletions_queued"] += 1
    slots: dict[tuple[str, str], str] = {}
    for request_id in compromised:
        req = store.row(tx, "requests", request_id)
        if req["escrow"] != "current" or req["revocation"] is not None:
            continue  # a history key: revoked already
        retire_to_history(store, tx, req, event, outcome.reason)
        counts["revocations_queued"] += req["kind"] != "imported"  # not at a CA
        slots[(req["user_id"], req["profile_id"])] = request_id
    user_id = device["user_id"]
    targeted = targeted_users(tx, [user_id])
    live = _live_slots(tx, [user_id])
    imported = _imported_profiles(tx)  # no re-issue: the admin imports a replacement
    for slot, replaced in sorted(slots.items()):
        if slot[1] in imported:
            continue
        if slot in targeted and slot not in live and _active_devices(tx, user_id):
            store.insert_request(
                tx, user_id, slot[1], kind="rollover", replaces=replaced, user_id=user_id
            )
            counts["rollovers_queued"] += 1


def _untargeted(
    store: Store, tx: sqlite3.Connection, event: Event, users: Sequence[str] | None, counts: Counts
) -> None:
    outcome = user_outcome(event, store.current_mode(tx))
    assert outcome is not None
    held = {
        (r["user_id"], r["profile_id"])
        for r in tx.execute(
            "SELECT DISTINCT user_id, profile_id FROM requests WHERE scope = 'user' "
            "AND escrow IN ('current', 'history') "
            "AND (? IS NULL OR user_id IN (SELECT value FROM json_each(?)))",
            _in(users),
        )
    }
    table = Outcome(revoke=True, delete=False, reason=outcome.reason)
    now = store.now_iso()
    for user_id, profile_id in sorted(held - targeted_users(tx, users)):
        live = tx.execute(
            f"SELECT * FROM requests WHERE scope = 'user' AND {LIVE} "  # noqa: S608
            "AND user_id = ? AND profile_id = ? ORDER BY seq",
            (user_id, profile_id),
        ).fetchall()
        for key, value in store.retire_requests(tx, live, event, table).items():
            counts[key] += value
        tx.execute(
            "UPDATE requests SET escrow = 'withdrawn', updated_at = ? WHERE scope = 'user' "
            "AND user_id = ? AND profile_id = ? AND escrow IN ('current', 'history')",
            (now, user_id, profile_id),
        )
        counts["deletions_queued"] += tx.execute(
            "UPDATE user_copies SET device_delete = 'pending', updated_at = ? "
            "WHERE user_id = ? AND profile_id = ? AND delivered_at IS NOT NULL "
            "AND device_delete IS NULL",
            (now, user_id, profile_id),
        ).rowcount
        tx.execute(
            "UPDATE user_copies SET state = 'withdrawn', reason = ?, updated_at = ? "
            "WHERE user_id = ? AND profile_id = ? AND delivered_at IS NULL",
            (f"never delivered: {event.value}", now, user_id, profile_id),
        )


def apply_event(
    store: Store,
    tx: sqlite3.Connection,
    event: Event,
    *,
    devices: Sequence[str] | None,
    acted_on: str | None,
) -> Counts:
    """The user-scope table for one admin action, after its change was made.

    ``acted_on``: the device of a device action (retire, block, delete);
    ``devices``: what the change may have un-targeted (None: anything).
    """
    counts: Counts = {
        "revocations_queued": 0,
        "deletions_queued": 0,
        "requests_cancelled": 0,
        "rollovers_queued": 0,
    }
    if acted_on is not None:
        _device_event(store, tx, event, acted_on, counts)
    else:
        _untargeted(store, tx, event, users_of(tx, devices), counts)
    return counts
