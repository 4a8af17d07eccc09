"""Bodies of the admin API: profiles, users, groups, devices, assignments, the
revocation-table actions, connectors' revocation and epochs, and enrollment.

    from chaos.service import models as m

    @router.post("/profiles", response_model=m.ProfileOut, status_code=201)
    def create_profile(body: m.ProfileIn) -> m.ProfileOut: ...

Importers use :mod:`chaos.service.models`, which re-exports every body; the
strict base and the bounded field types are :mod:`chaos.service._model_base`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from chaos.service._model_base import (
    Id,
    KeyType,
    LeaderEpoch,
    Name,
    Pem,
    Reason,
    Strict,
    Template,
)

__all__ = [
    "AcceptEpochIn",
    "ActionResult",
    "AssignmentAction",
    "AssignmentIn",
    "AssignmentOut",
    "ConnectorRevokeIn",
    "ConnectorRevoked",
    "DeviceAction",
    "DeviceIn",
    "DeviceOut",
    "EnrollIn",
    "EnrolledOut",
    "EnrollmentTokenIn",
    "EnrollmentTokenOut",
    "EpochAccepted",
    "GroupIn",
    "GroupOut",
    "LeaveGroupAction",
    "MembershipIn",
    "MembershipOut",
    "ModeIn",
    "ModeOut",
    "ProfileAction",
    "ProfileIn",
    "ProfileOut",
    "ProfileUpdate",
    "Queued",
    "RenewIn",
    "RenewalScanIn",
    "UserAction",
    "UserIn",
    "UserOut",
    "UserUpdate",
]


# -- admin ------------------------------------------------------------------


class ProfileIn(Strict):
    id: Id
    key_type: KeyType = "rsa2048"
    template: Template = "user-auth"
    validity_days: int = Field(default=365, ge=1, le=3650)
    renewal_threshold_percent: int = Field(default=20, ge=1, le=99)
    subject_template: Template = "CN={{UserName}}"
    san_templates: list[Template] = Field(default_factory=list, max_length=10)
    # device: one certificate per device (the seed's default); user: one per user,
    # shared by all of the user's devices (S/MIME). Fixed once the profile exists.
    scope: Literal["device", "user"] = "device"
    # ca: the connector requests certificates from the profile's template; imported:
    # an admin imports each user's PFX (scope user only; never sent to a CA).
    source: Literal["ca", "imported"] = "ca"


class ProfileUpdate(Strict):
    key_type: KeyType | None = None
    template: Template | None = None
    validity_days: int | None = Field(default=None, ge=1, le=3650)
    renewal_threshold_percent: int | None = Field(default=None, ge=1, le=99)
    subject_template: Template | None = None
    san_templates: list[Template] | None = Field(default=None, max_length=10)


class ProfileOut(ProfileIn):
    pass


class UserIn(Strict):
    id: Id
    name: Name
    upn: Name
    email: Name


class UserUpdate(Strict):
    name: Name | None = None
    upn: Name | None = None
    email: Name | None = None


class UserOut(UserIn):
    state: str


class GroupIn(Strict):
    id: Id
    name: Name


class MembershipIn(Strict):
    user_id: Id


class DeviceIn(Strict):
    id: Id
    user_id: Id
    # Optional: the device's own RSA public key; without it the service makes
    # the key pair and returns the private key once.
    public_key_pem: Pem | None = None


class DeviceOut(Strict):
    id: str
    user_id: str
    state: str
    management_certificate_pem: str
    management_key_pem: str | None = None


class AssignmentIn(Strict):
    id: Id
    profile_id: Id
    group_id: Id


class ModeIn(Strict):
    mode: Literal["hybrid", "standalone"]


class RenewalScanIn(Strict):
    # Evaluate the threshold as of this instant (a lab clock); default now.
    as_of: Annotated[dt.datetime, Field(strict=False)] | None = None


class ActionResult(Strict):
    event: str
    mode: str
    revocations_queued: int
    deletions_queued: int
    requests_cancelled: int
    requests_queued: int = 0
    # User-scoped certificates re-issued because a device's copy of the key left
    # our control (admin retire, block, delete).
    rollovers_queued: int = 0


class Queued(Strict):
    requests_queued: int


# -- admin actions (one per row of the seed's revocation table) ---------------


class DeviceAction(Strict):
    device_id: Id


class UserAction(Strict):
    user_id: Id


class LeaveGroupAction(Strict):
    group_id: Id
    user_id: Id


class ProfileAction(Strict):
    profile_id: Id


class AssignmentAction(Strict):
    assignment_id: Id


class GroupOut(GroupIn):
    members: list[str]


class AssignmentOut(AssignmentIn):
    requests_queued: int = 0


class MembershipOut(Strict):
    group_id: str
    user_id: str
    requests_queued: int


class ConnectorRevokeIn(Strict):
    reason: Reason = "revoked by an admin"


class AcceptEpochIn(Strict):
    epoch: LeaderEpoch
    reason: Reason = "accepted by an admin"


class EpochAccepted(Strict):
    name: str
    epoch: int
    highest_epoch: int


class ConnectorRevoked(Strict):
    name: str
    revoked_at: str
    reason: str


class ModeOut(Strict):
    mode: str


# -- enrollment (issue 8) -------------------------------------------------------


class EnrollmentTokenIn(Strict):
    ttl_s: int = Field(default=600, ge=10, le=86_400)


class EnrollmentTokenOut(Strict):
    name: str
    token: str
    expires_at: str


class EnrollIn(Strict):
    token: str = Field(min_length=16, max_length=200)
    csr_pem: str = Field(min_length=1, max_length=20_000)


class RenewIn(Strict):
    name: Id
    csr_pem: str = Field(min_length=1, max_length=20_000)


class EnrolledOut(Strict):
    name: str
    certificate_pem: str
    ca_certificate_pem: str
    not_after: str
