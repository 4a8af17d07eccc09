"""Admin API (/api/v1/admin): the directory, profiles, devices, targeting, mode.

Creating targeting (membership, device, assignment) queues one request per
newly targeted (device, profile), in the same transaction. Taking targeting
away is an action of the revocation table: see :mod:`api_actions`.
"""

from __future__ import annotations

import json
import sqlite3

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends

from chaos.service import models as m
from chaos.service.auth import AuthPolicy
from chaos.service.events import Event as LogEvent
from chaos.service.events import emit, log
from chaos.service.rules import Mode
from chaos.service.scope import profile_scope_problem
from chaos.service.store import ApiError, Store
from chaos.service.user_certs import queue_missing_users

__all__ = ["admin_router"]


def admin_router(store: Store, auth: AuthPolicy) -> APIRouter:
    router = APIRouter(
        responses=m.errors(400, 401, 404, 409, 413),
        prefix="/api/v1/admin",
        tags=["admin"],
        dependencies=[Depends(auth.admin)],
    )

    def exists(tx: sqlite3.Connection, table: str, row_id: str) -> bool:
        sql = f"SELECT 1 FROM {table} WHERE id = ?"  # noqa: S608 - table is ours
        return tx.execute(sql, (row_id,)).fetchone() is not None

    def refuse_duplicate(tx: sqlite3.Connection, table: str, row_id: str) -> None:
        if exists(tx, table, row_id):
            raise ApiError(409, f"{table.rstrip('s')} {row_id!r} already exists")

    # -- mode -------------------------------------------------------------------

    @router.get("/mode", response_model=m.ModeOut)
    def get_mode() -> m.ModeOut:
        with store.db.transaction() as tx:
            return m.ModeOut(mode=store.current_mode(tx).value)

    @router.put("/mode", response_model=m.ModeOut)
    def set_mode(body: m.ModeIn) -> m.ModeOut:
        with store.db.transaction() as tx:
            store.db.meta_set(tx, "mode", Mode(body.mode).value)
        return m.ModeOut(mode=body.mode)

    # -- profiles -------------------------------------------------------------

    def profile_out(row: sqlite3.Row) -> m.ProfileOut:
        return m.ProfileOut(
            id=row["id"],
            key_type=row["key_type"],
            template=row["template"],
            validity_days=row["validity_days"],
            renewal_threshold_percent=row["renewal_threshold_percent"],
            subject_template=row["subject_template"],
            san_templates=json.loads(row["san_templates"]),
            scope=row["scope"],
            source=row["source"],
        )

    def refuse_bad_scope(scope: str, subject_template: str, san_templates: list[str]) -> None:
        problem = profile_scope_problem(scope, subject_template, san_templates)
        if problem is not None:
            raise ApiError(400, problem)

    @router.post("/profiles", response_model=m.ProfileOut, status_code=201)
    def create_profile(body: m.ProfileIn) -> m.ProfileOut:
        refuse_bad_scope(body.scope, body.subject_template, body.san_templates)
        if body.source == "imported" and body.scope != "user":
            raise ApiError(
                400, "source=imported needs scope=user: an imported PFX belongs to a user"
            )
        with store.db.transaction() as tx:
            refuse_duplicate(tx, "profiles", body.id)
            tx.execute(
                "INSERT INTO profiles(id, key_type, template, validity_days, "
                "renewal_threshold_percent, subject_template, san_templates, created_at, scope, "
                "source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    body.id,
                    body.key_type,
                    body.template,
                    body.validity_days,
                    body.renewal_threshold_percent,
                    body.subject_template,
                    json.dumps(body.san_templates),
                    store.now_iso(),
                    body.scope,
                    body.source,
                ),
            )
            return profile_out(store.row(tx, "profiles", body.id))

    @router.get("/profiles/{profile_id}", response_model=m.ProfileOut)
    def get_profile(profile_id: m.Id) -> m.ProfileOut:
        with store.db.transaction() as tx:
            return profile_out(store.row(tx, "profiles", profile_id))

    @router.patch("/profiles/{profile_id}", response_model=m.ProfileOut)
    def update_profile(profile_id: m.Id, body: m.ProfileUpdate) -> m.ProfileOut:
        """Changes apply to requests queued from now on, not to issued certificates."""
        with store.db.transaction() as tx:
            row = store.row(tx, "profiles", profile_id)
            refuse_bad_scope(
                row["scope"],
                body.subject_template or row["subject_template"],
                body.san_templates
                if body.san_templates is not None
                else json.loads(row["san_templates"]),
            )
            for column, value in body.model_dump(exclude_none=True).items():
                stored = json.dumps(value) if column == "san_templates" else value
                tx.execute(
                    f"UPDATE profiles SET {column} = ? WHERE id = ?",  # noqa: S608 - model fields
                    (stored, profile_id),
                )
            return profile_out(store.row(tx, "profiles", profile_id))

    # -- users and groups ---------------------------------------------------------

    def user_out(row: sqlite3.Row) -> m.UserOut:
        return m.UserOut(
            id=row["id"], name=row["name"], upn=row["upn"], email=row["email"], state=row["state"]
        )

    @router.post("/users", response_model=m.UserOut, status_code=201)
    def create_user(body: m.UserIn) -> m.UserOut:
        with store.db.transaction() as tx:
            refuse_duplicate(tx, "users", body.id)
            tx.execute(
                "INSERT INTO users(id, name, upn, email, created_at) VALUES (?, ?, ?, ?, ?)",
                (body.id, body.name, body.upn, body.email, store.now_iso()),
            )
            return user_out(store.row(tx, "users", body.id))

    @router.get("/users/{user_id}", response_model=m.UserOut)
    def get_user(user_id: m.Id) -> m.UserOut:
        with store.db.transaction() as tx:
            return user_out(store.row(tx, "users", user_id))

    @router.patch("/users/{user_id}", response_model=m.UserOut)
    def update_user(user_id: m.Id, body: m.UserUpdate) -> m.UserOut:
        with store.db.transaction() as tx:
            store.row(tx, "users", user_id)
            for column, value in body.model_dump(exclude_none=True).items():
                tx.execute(
                    f"UPDATE users SET {column} = ? WHERE id = ?",  # noqa: S608 - model fields
                    (value, user_id),
                )
            return user_out(store.row(tx, "users", user_id))

    @router.delete("/users/{user_id}", status_code=204)
    def delete_user(user_id: m.Id) -> None:
        with store.db.transaction() as tx:
            store.row(tx, "users", user_id)
            if tx.execute("SELECT 1 FROM devices WHERE user_id = ?", (user_id,)).fetchone():
                raise ApiError(409, f"user {user_id!r} still has devices; retire them first")
            if tx.execute("SELECT 1 FROM memberships WHERE user_id = ?", (user_id,)).fetchone():
                raise ApiError(409, f"user {user_id!r} is still in groups; remove them first")
            tx.execute("DELETE FROM users WHERE id = ?", (user_id,))

    def group_out(tx: sqlite3.Connection, group_id: str) -> m.GroupOut:
        row = store.row(tx, "groups", group_id)
        members = [
            r["user_id"]
            for r in tx.execute(
                "SELECT user_id FROM memberships WHERE group_id = ? ORDER BY user_id", (group_id,)
            )
        ]
        return m.GroupOut(id=row["id"], name=row["name"], members=members)

    @router.post("/groups", response_model=m.GroupOut, status_code=201)
    def create_group(body: m.GroupIn) -> m.GroupOut:
        with store.db.transaction() as tx:
            refuse_duplicate(tx, "groups", body.id)
            tx.execute("INSERT INTO groups(id, name) VALUES (?, ?)", (body.id, body.name))
            return group_out(tx, body.id)

    @router.get("/groups/{group_id}", response_model=m.GroupOut)
    def get_group(group_id: m.Id) -> m.GroupOut:
        with store.db.transaction() as tx:
            return group_out(tx, group_id)

    @router.delete("/groups/{group_id}", status_code=204)
    def delete_group(group_id: m.Id) -> None:
        with store.db.transaction() as tx:
            store.row(tx, "groups", group_id)
            for table in ("memberships", "assignments"):
                sql = f"SELECT 1 FROM {table} WHERE group_id = ?"  # noqa: S608 - ours
                if tx.execute(sql, (group_id,)).fetchone():
                    raise ApiError(409, f"group {group_id!r} still has {table}; remove them first")
            tx.execute("DELETE FROM groups WHERE id = ?", (group_id,))

    @router.post("/groups/{group_id}/members", response_model=m.MembershipOut, status_code=201)
    def add_member(group_id: m.Id, body: m.MembershipIn) -> m.MembershipOut:
        with store.db.transaction() as tx:
            store.row(tx, "groups", group_id)
            store.row(tx, "users", body.user_id)
            tx.execute(
                "INSERT INTO memberships(group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (group_id, body.user_id),
            )
            queued = store.queue_missing(tx, store.devices_of(tx, user=body.user_id))
            queued += queue_missing_users(store, tx, [body.user_id])
        emit(log, LogEvent.REQUESTS_QUEUED, cause="membership", group=group_id, count=queued)
        store.wake()
        return m.MembershipOut(group_id=group_id, user_id=body.user_id, requests_queued=queued)

    # -- devices -------------------------------------------------------------------

    def device_out(row: sqlite3.Row, key_pem: bytes | None = None) -> m.DeviceOut:
        return m.DeviceOut(
            id=row["id"],
            user_id=row["user_id"],
            state=row["state"],
            management_certificate_pem=row["certificate_pem"],
            management_key_pem=key_pem.decode() if key_pem else None,
        )

    @router.post("/devices", response_model=m.DeviceOut, status_code=201)
    def create_device(body: m.DeviceIn) -> m.DeviceOut:
        with store.db.transaction() as tx:
            refuse_duplicate(tx, "devices", body.id)
            store.row(tx, "users", body.user_id)
        # Key generation is slow: outside the write lock, then re-checked inside.
        try:
            cert, key_pem = store.keys.issue_device_certificate(
                body.id, body.public_key_pem.encode() if body.public_key_pem else None
            )
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"public_key_pem: {exc}") from exc
        with store.db.transaction() as tx:
            refuse_duplicate(tx, "devices", body.id)
            store.row(tx, "users", body.user_id)
            tx.execute(
                "INSERT INTO devices(id, user_id, certificate_pem, created_at) VALUES (?, ?, ?, ?)",
                (
                    body.id,
                    body.user_id,
                    cert.public_bytes(serialization.Encoding.PEM).decode(),
                    store.now_iso(),
                ),
            )
            queued = store.queue_missing(tx, [body.id])
            queued += queue_missing_users(store, tx, [body.user_id])
            row = store.row(tx, "devices", body.id)
        emit(log, LogEvent.REQUESTS_QUEUED, cause="device", device=body.id, count=queued)
        store.wake()
        return device_out(row, key_pem)

    @router.get("/devices/{device_id}", response_model=m.DeviceOut)
    def get_device(device_id: m.Id) -> m.DeviceOut:
        with store.db.transaction() as tx:
            return device_out(store.row(tx, "devices", device_id))

    # -- assignments ----------------------------------------------------------------

    @router.post("/assignments", response_model=m.AssignmentOut, status_code=201)
    def create_assignment(body: m.AssignmentIn) -> m.AssignmentOut:
        with store.db.transaction() as tx:
            refuse_duplicate(tx, "assignments", body.id)
            store.row(tx, "profiles", body.profile_id)
            store.row(tx, "groups", body.group_id)
            same = tx.execute(
                "SELECT id FROM assignments WHERE profile_id = ? AND group_id = ?",
                (body.profile_id, body.group_id),
            ).fetchone()
            if same is not None:
                raise ApiError(409, f"profile already assigned to that group as {same['id']!r}")
            tx.execute(
                "INSERT INTO assignments(id, profile_id, group_id) VALUES (?, ?, ?)",
                (body.id, body.profile_id, body.group_id),
            )
            queued = store.queue_missing(tx, store.devices_of(tx, group=body.group_id))
            members = [
                r["user_id"]
                for r in tx.execute(
                    "SELECT user_id FROM memberships WHERE group_id = ?", (body.group_id,)
                )
            ]
            queued += queue_missing_users(store, tx, members)
        emit(log, LogEvent.REQUESTS_QUEUED, cause="assignment", assignment=body.id, count=queued)
        store.wake()
        return m.AssignmentOut(
            id=body.id, profile_id=body.profile_id, group_id=body.group_id, requests_queued=queued
        )

    return router
