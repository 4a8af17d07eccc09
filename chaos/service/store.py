"""The service's state and the shared steps every API uses.

:class:`Store` owns the database, the key material, the clock and the
condition that wakes long polls. The API modules (admin, connector, device,
read) call its helpers inside one :meth:`Database.transaction` per call::

    store = Store(Database(path), ServiceKeys.load_or_create(dir), mode=Mode.HYBRID)
    with store.db.transaction() as tx:
        store.queue_missing(tx)                 # one request per targeted (device, profile)
    store.wake()                                # long polls look again

Errors are :class:`ApiError` (status + reason): raised inside a transaction
they roll it back, so a refused call changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.service.db import Database
from chaos.service.keys import ServiceKeys
from chaos.service.rules import AdvancePolicy, Event, Mode, Outcome, revocation_outcome

__all__ = ["NOT_AT_CA", "STOOD_DOWN_EPOCH", "ApiError", "Store", "StoreSettings"]

# A request slot (device, profile) is "live" while one of its requests may
# still become or is the device's certificate.
LIVE = "cancelled IS NULL AND revocation IS NULL AND state != 'failed'"
# Rows of device-scoped profiles (the seed's one certificate per device): the
# slot logic here is theirs; user-scoped rows are :mod:`chaos.service.user_certs`'.
DEVICE_SCOPE = "scope = 'device'"


class ApiError(Exception):
    """A refused call: HTTP ``status`` with ``reason``; ``extra`` joins the JSON body."""

    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


# requests.revocation of an imported PFX that an event retired: not revoked at a CA.
NOT_AT_CA = "not-at-ca"

# meta key: the highest epoch at the moment its holder heartbeated as a standby
# (the holder is not active while the highest epoch is still this one).
STOOD_DOWN_EPOCH = "stood_down_epoch"


@dataclass(frozen=True)
class StoreSettings:
    connector_stale_after_s: float = 15.0  # no call for this long: health "unknown"
    poll_lease_s: float = 30.0  # a polled request is not handed out again for this long
    advance: AdvancePolicy = field(default_factory=AdvancePolicy)  # epoch-advance budget
    # A user-scoped renewal retires the certificate it replaces once every device of
    # the user installed it, or this long after it was issued, whichever comes first.
    user_renewal_deadline_s: float = 7 * 86_400.0
    # Key recovery: at most this many in any window, for the whole service.
    key_recovery_limit: int = 5
    key_recovery_window_s: float = 3600.0


@dataclass
class Store:
    db: Database
    keys: ServiceKeys
    mode: Mode | None = None  # None: keep what the database says (hybrid on first start)
    settings: StoreSettings = field(default_factory=StoreSettings)
    clock: Callable[[], float] = time.time
    on_stale: Callable[[str], None] = lambda endpoint: None
    on_revoked: Callable[[str], None] = lambda endpoint: None
    on_forged: Callable[[str], None] = lambda kind: None
    _work: threading.Condition = field(default_factory=threading.Condition)
    _generation: int = 0
    closing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        with self.db.transaction() as tx:
            if self.mode is not None:
                self.db.meta_set(tx, "mode", self.mode.value)
            elif self.db.meta_get(tx, "mode", "") == "":
                self.db.meta_set(tx, "mode", Mode.HYBRID.value)

    # -- time and ids ---------------------------------------------------------

    def now_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat()

    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    def current_mode(self, tx: sqlite3.Connection) -> Mode:
        return Mode(self.db.meta_get(tx, "mode", Mode.HYBRID.value))

    # -- long polls -----------------------------------------------------------

    def work_generation(self) -> int:
        """Read before looking for work; pass to :meth:`wait_for_work` (no lost wake-ups)."""
        with self._work:
            return self._generation

    def close(self) -> None:
        """Shutting down: long polls answer now (empty) instead of waiting out their time."""
        self.closing.set()
        self.wake()

    def wake(self) -> None:
        with self._work:
            self._generation += 1
            self._work.notify_all()

    def wait_for_work(self, seen: int, timeout: float) -> None:
        """Sleep until :meth:`wake` is called after generation ``seen``, or ``timeout``."""
        with self._work:
            self._work.wait_for(lambda: self._generation != seen, timeout)

    # -- lookups ----------------------------------------------------------------

    def row(self, tx: sqlite3.Connection, table: str, row_id: str) -> sqlite3.Row:
        found = tx.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()  # noqa: S608 - table is ours
        if found is None:
            raise ApiError(404, f"unknown {table.rstrip('s')} {row_id!r}")
        return found  # type: ignore[no-any-return]

    def event(self, tx: sqlite3.Connection, kind: str, subject: str, **detail: Any) -> None:
        tx.execute(
            "INSERT INTO events(at, kind, subject, detail) VALUES (?, ?, ?, ?)",
            (self.now_iso(), kind, subject, json.dumps(detail, sort_keys=True)),
        )

    # -- targeting and request queueing ----------------------------------------

    @staticmethod
    def targeted(
        tx: sqlite3.Connection, devices: Sequence[str] | None = None
    ) -> set[tuple[str, str]]:
        """Every (device, profile) that should hold a certificate right now.

        ``devices`` narrows the question to those devices (a change that can
        only affect them need not scan the whole tenant).
        """
        rows = tx.execute(
            "SELECT DISTINCT d.id AS device_id, a.profile_id FROM devices d "
            "JOIN users u ON u.id = d.user_id "
            "JOIN memberships m ON m.user_id = u.id "
            "JOIN assignments a ON a.group_id = m.group_id "
            "JOIN profiles p ON p.id = a.profile_id "
            "WHERE d.state = 'active' AND u.state = 'active' AND p.scope = 'device' "
            "AND (? IS NULL OR d.id IN (SELECT value FROM json_each(?)))",
            _device_filter(devices),
        ).fetchall()
        return {(r["device_id"], r["profile_id"]) for r in rows}

    @staticmethod
    def devices_of(
        tx: sqlite3.Connection, *, user: str | None = None, group: str | None = None
    ) -> list[str]:
        """Device ids of a user, or of every member of a group."""
        if user is not None:
            rows = tx.execute("SELECT id FROM devices WHERE user_id = ?", (user,))
        else:
            rows = tx.execute(
                "SELECT d.id FROM devices d JOIN memberships m ON m.user_id = d.user_id "
                "WHERE m.group_id = ?",
                (group,),
            )
        return [r["id"] for r in rows]

    def queue_missing(self, tx: sqlite3.Connection, devices: Sequence[str] | None = None) -> int:
        """Queue one request for each targeted slot that has no live request (seed step 2)."""
        live = {
            (r["device_id"], r["profile_id"])
            for r in tx.execute(
                f"SELECT device_id, profile_id FROM requests WHERE {LIVE} AND {DEVICE_SCOPE} "  # noqa: S608
                "AND (? IS NULL OR device_id IN (SELECT value FROM json_each(?)))",
                _device_filter(devices),
            )
        }
        queued = 0
        for device_id, profile_id in sorted(self.targeted(tx, devices) - live):
            self.insert_request(tx, device_id, profile_id, kind="new", replaces=None)
            queued += 1
        return queued

    def insert_request(
        self,
        tx: sqlite3.Connection,
        device_id: str,
        profile_id: str,
        *,
        kind: str,
        replaces: str | None,
        user_id: str | None = None,
    ) -> str:
        """Queue a request for ``device_id``'s slot; with ``user_id``, the user's shared
        certificate (scope user: ``device_id`` is then the user id, the subject it names)."""
        request_id = self.new_id("req")
        now = self.now_iso()
        scope, escrow = ("device", None) if user_id is None else ("user", "current")
        tx.execute(
            "INSERT INTO requests(id, seq, device_id, profile_id, kind, replaces, state, "
            "created_at, updated_at, scope, user_id, escrow) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
            (
                request_id,
                self.db.next_seq(tx),
                device_id,
                profile_id,
                kind,
                replaces,
                now,
                now,
                scope,
                user_id,
                escrow,
            ),
        )
        return request_id

    # -- the revocation table -----------------------------------------------------

    def outcome_or_refuse(self, tx: sqlite3.Connection, event: Event) -> Outcome:
        mode = self.current_mode(tx)
        outcome = revocation_outcome(event, mode)
        if outcome is None:
            raise ApiError(
                400, f"{event.value} is not available in {mode.value} mode (n/a in the seed table)"
            )
        return outcome

    def retire_requests(
        self,
        tx: sqlite3.Connection,
        requests: Iterable[sqlite3.Row],
        event: Event,
        outcome: Outcome,
    ) -> dict[str, int]:
        """Apply ``outcome`` to live requests: cancel, queue revocation, queue deletion."""
        counts = {"revocations_queued": 0, "deletions_queued": 0, "requests_cancelled": 0}
        now = self.now_iso()
        for req in requests:
            state = req["state"]
            if state == "pending":
                tx.execute(
                    "UPDATE requests SET state = 'failed', reason = ?, cancelled = ?, "
                    "updated_at = ? WHERE id = ?",
                    (f"cancelled: {event.value}", event.value, now, req["id"]),
                )
                counts["requests_cancelled"] += 1
            elif state == "in_flight":
                # The connector may already hold a certificate for it: when it
                # uploads, the service revokes that certificate at once.
                tx.execute(
                    "UPDATE requests SET cancelled = ?, updated_at = ? WHERE id = ?",
                    (event.value, now, req["id"]),
                )
                counts["requests_cancelled"] += 1
            elif state in ("issued", "delivered", "installed"):
                self.queue_revocation(tx, req, event, outcome.reason)
                counts["revocations_queued"] += req["kind"] != "imported"  # not at a CA
                updates = "cancelled = ?, updated_at = ?"
                params: list[Any] = [event.value, now]
                if state == "issued":
                    updates += ", state = 'failed', reason = ?"
                    params.append(f"cancelled before delivery: {event.value}")
                    counts["requests_cancelled"] += 1
                elif outcome.delete:
                    updates += ", device_delete = 'pending'"
                    counts["deletions_queued"] += 1
                tx.execute(f"UPDATE requests SET {updates} WHERE id = ?", (*params, req["id"]))  # noqa: S608
        return counts

    def queue_revocation(
        self, tx: sqlite3.Connection, req: sqlite3.Row, event: Event, reason: str
    ) -> None:
        if req["kind"] == "imported":
            # An imported PFX came from a CA pfxha does not run: it is removed from
            # devices as the table says, never revoked at any CA.
            tx.execute(
                "UPDATE requests SET revocation = ?, updated_at = ? WHERE id = ?",
                (NOT_AT_CA, self.now_iso(), req["id"]),
            )
            return
        tx.execute(
            "INSERT INTO revocations(id, seq, request_id, serial, ca_name, reason, event, state, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) "
            "ON CONFLICT(request_id) DO NOTHING",
            (
                self.new_id("rev"),
                self.db.next_seq(tx),
                req["id"],
                req["serial"],
                req["ca_name"],
                reason,
                event.value,
                self.now_iso(),
            ),
        )
        tx.execute("UPDATE requests SET revocation = 'pending' WHERE id = ?", (req["id"],))

    def retire_untargeted(
        self, tx: sqlite3.Connection, event: Event, devices: Sequence[str] | None = None
    ) -> dict[str, int]:
        """After a change that narrows targeting: apply the table to every slot it dropped.

        ``devices``: the only devices the change can have affected (None: all).
        """
        outcome = self.outcome_or_refuse(tx, event)
        targeted = self.targeted(tx, devices)
        dropped = [
            req
            for req in tx.execute(
                f"SELECT * FROM requests WHERE {LIVE} AND {DEVICE_SCOPE} "  # noqa: S608
                "AND (? IS NULL OR device_id IN (SELECT value FROM json_each(?))) ORDER BY seq",
                _device_filter(devices),
            )
            if (req["device_id"], req["profile_id"]) not in targeted
        ]
        return self.retire_requests(tx, dropped, event, outcome)


def _device_filter(devices: Sequence[str] | None) -> tuple[str | None, str | None]:
    if devices is None:
        return None, None
    encoded = json.dumps(list(devices))
    return encoded, encoded
