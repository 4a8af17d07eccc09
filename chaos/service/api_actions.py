"""Admin actions (/api/v1/admin): one per row of the seed's revocation table, and more.

Each action changes the directory, then applies the table (for the current
``mode``) to every (device, profile) slot the change un-targeted, in one
transaction. The DELETE routes of profiles, devices, memberships and
assignments run the same actions. In standalone mode the table's "n/a" rows
answer 400. Also here: revoking a connector and the renewal scan.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Sequence

from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.fencing import Gate
from chaos.service.renewal import scan_renewals
from chaos.service.rules import Event
from chaos.service.store import ApiError, Store
from chaos.service.user_certs import apply_event

__all__ = ["actions_router"]

# An admin change: applies itself, returns the devices it may have un-targeted
# (None: any device).
Change = Callable[[sqlite3.Connection], Sequence[str] | None]


def actions_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 401, 404, 409, 413),
        prefix="/api/v1/admin",
        tags=["admin"],
        dependencies=[Depends(auth.admin)],
    )
    gate = Gate(store)

    def act(event: Event, change: Change, acted_on: str | None = None) -> m.ActionResult:
        """``acted_on``: the device of a device action (its user-scoped copies follow the
        user-scope table: removed there only, or rolled over when the key left our control)."""
        with store.db.transaction() as tx:
            store.outcome_or_refuse(tx, event)
            devices = change(tx)
            counts = store.retire_untargeted(tx, event, devices)
            user = apply_event(store, tx, event, devices=devices, acted_on=acted_on)
            counts = {k: counts.get(k, 0) + user[k] for k in user}
            store.event(tx, "admin-action", event.value, **counts)
            mode = store.current_mode(tx)
        emit(log, LogEvent.REVOCATION_EVENT, action=event.value, mode=mode.value, **counts)
        store.wake()
        return m.ActionResult(event=event.value, mode=mode.value, **counts)

    def device_event(event: Event, device_id: str, state: str) -> m.ActionResult:
        def change(tx: sqlite3.Connection) -> list[str]:
            store.row(tx, "devices", device_id)
            tx.execute("UPDATE devices SET state = ? WHERE id = ?", (state, device_id))
            return [device_id]

        return act(event, change, acted_on=device_id)

    def leave(group_id: str, user_id: str) -> m.ActionResult:
        def change(tx: sqlite3.Connection) -> list[str]:
            gone = tx.execute(
                "DELETE FROM memberships WHERE group_id = ? AND user_id = ?", (group_id, user_id)
            ).rowcount
            if gone == 0:
                raise ApiError(404, f"user {user_id!r} is not a member of group {group_id!r}")
            return store.devices_of(tx, user=user_id)

        return act(Event.LEAVE_GROUP, change)

    def drop_profile(profile_id: str) -> m.ActionResult:
        def change(tx: sqlite3.Connection) -> None:
            store.row(tx, "profiles", profile_id)
            tx.execute("DELETE FROM assignments WHERE profile_id = ?", (profile_id,))
            tx.execute("DELETE FROM profiles WHERE id = ?", (profile_id,))
            return None

        return act(Event.DELETE_PROFILE, change)

    def unassign(assignment_id: str) -> m.ActionResult:
        def change(tx: sqlite3.Connection) -> list[str]:
            assignment = store.row(tx, "assignments", assignment_id)
            tx.execute("DELETE FROM assignments WHERE id = ?", (assignment_id,))
            return store.devices_of(tx, group=assignment["group_id"])

        return act(Event.REMOVE_ASSIGNMENT, change)

    # -- one action per row ------------------------------------------------------

    @router.post("/actions/retire-user", response_model=m.ActionResult)
    def retire_user(body: m.DeviceAction) -> m.ActionResult:
        """Retire (user initiated): deleted & revoked in both modes."""
        return device_event(Event.RETIRE_USER, body.device_id, "retired")

    @router.post("/actions/retire-admin", response_model=m.ActionResult)
    def retire_admin(body: m.DeviceAction) -> m.ActionResult:
        """Retire (admin initiated): deleted & revoked in both modes."""
        return device_event(Event.RETIRE_ADMIN, body.device_id, "retired")

    @router.post("/actions/block", response_model=m.ActionResult)
    def block(body: m.DeviceAction) -> m.ActionResult:
        """Block: revoked (not deleted) in hybrid; n/a in standalone."""
        return device_event(Event.BLOCK, body.device_id, "blocked")

    @router.post("/actions/delete-device", response_model=m.ActionResult)
    def delete_device(body: m.DeviceAction) -> m.ActionResult:
        """Delete: deleted & revoked in hybrid; n/a in standalone."""
        return device_event(Event.DELETE_DEVICE, body.device_id, "deleted")

    @router.post("/actions/leave-group", response_model=m.ActionResult)
    def leave_group(body: m.LeaveGroupAction) -> m.ActionResult:
        """User leaves a group: deleted & revoked where no other group still targets them."""
        return leave(body.group_id, body.user_id)

    @router.post("/actions/delete-profile", response_model=m.ActionResult)
    def delete_profile_action(body: m.ProfileAction) -> m.ActionResult:
        """Delete the PFX profile: deleted & revoked in both modes."""
        return drop_profile(body.profile_id)

    @router.post("/actions/remove-assignment", response_model=m.ActionResult)
    def remove_assignment(body: m.AssignmentAction) -> m.ActionResult:
        """Remove targeting / deployment: deleted & revoked in both modes."""
        return unassign(body.assignment_id)

    @router.post("/actions/revoke-all-of-user", response_model=m.ActionResult)
    def revoke_all_of_user(body: m.UserAction) -> m.ActionResult:
        """Every certificate of every device of the user, in one action; no new ones."""

        def change(tx: sqlite3.Connection) -> list[str]:
            store.row(tx, "users", body.user_id)
            tx.execute("UPDATE users SET state = 'revoked' WHERE id = ?", (body.user_id,))
            return store.devices_of(tx, user=body.user_id)

        return act(Event.REVOKE_ALL_OF_USER, change)

    # -- the same actions as DELETE of the object ----------------------------------

    @router.delete("/profiles/{profile_id}", response_model=m.ActionResult)
    def delete_profile(profile_id: m.Id) -> m.ActionResult:
        return drop_profile(profile_id)

    @router.delete("/groups/{group_id}/members/{user_id}", response_model=m.ActionResult)
    def remove_member(group_id: m.Id, user_id: m.Id) -> m.ActionResult:
        return leave(group_id, user_id)

    @router.delete("/devices/{device_id}", response_model=m.ActionResult)
    def delete_device_route(device_id: m.Id) -> m.ActionResult:
        return device_event(Event.DELETE_DEVICE, device_id, "deleted")

    @router.delete("/assignments/{assignment_id}", response_model=m.ActionResult)
    def delete_assignment(assignment_id: m.Id) -> m.ActionResult:
        return unassign(assignment_id)

    # -- connectors and renewal ------------------------------------------------------

    @router.post("/connectors/{name}/revoke", response_model=m.ConnectorRevoked)
    def revoke_connector(name: m.Id, body: m.ConnectorRevokeIn) -> m.ConnectorRevoked:
        """Refuse every later call from connector ``name`` (403), whatever its epoch.

        The highest epoch seen does not move (it never decreases): if the revoked
        connector held it, the cluster's next leadership must register above it.
        How far a forger can push it is bounded (see docs/security.md).
        """
        row = gate.revoke(name, body.reason)
        return m.ConnectorRevoked(name=name, revoked_at=row["at"], reason=row["reason"])

    @router.post("/connectors/{name}/accept-epoch", response_model=m.EpochAccepted)
    def accept_epoch(name: m.Id, body: m.AcceptEpochIn) -> m.EpochAccepted:
        """Let connector ``name`` register exactly ``epoch`` once, beyond the advance budget.

        For the rare real jump the budget refuses (a service restored from an old
        backup, a cluster that went through more leaderships than the budget while
        the service was unreachable): check ZooKeeper's ``/epoch`` first. It never
        lowers the highest epoch, and a revoked connector stays refused.
        """
        highest = gate.accept_epoch(name, body.epoch, body.reason)
        return m.EpochAccepted(name=name, epoch=body.epoch, highest_epoch=highest)

    @router.post("/renewal-scan", response_model=m.Queued)
    def renewal_scan(body: m.RenewalScanIn) -> m.Queued:
        """Queue renewals for certificates past their threshold as of ``as_of`` (default now)."""
        as_of = body.as_of or dt.datetime.fromtimestamp(store.clock(), dt.UTC)
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.UTC)
        with store.db.transaction() as tx:
            queued = scan_renewals(store, tx, as_of)
        emit(log, LogEvent.RENEWALS_QUEUED, as_of=as_of.isoformat(), count=queued)
        store.wake()
        return m.Queued(requests_queued=queued)

    return router
