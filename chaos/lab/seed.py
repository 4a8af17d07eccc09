"""Seed the stand-in service the way an Intune tenant would look before a drill.

One PFX profile per CA template (``pfx-<template>``), a group per profile,
each profile assigned to its group, and a couple of users in every group,
each with one enrolled device unless ``devices=False`` (the drill enrolls
its own devices, whose keys it holds, so it can check every delivery).
The drill's workload enrolls its own devices into :data:`WORKLOAD_GROUP`.

With the ``smime`` template there is also a user-scoped S/MIME profile,
:data:`USER_SCOPE_PROFILE` (``scope: user``: one certificate per user, on all
of the user's devices), assigned to :data:`WORKLOAD_GROUP` too, so every
workload user also gets a shared certificate.

    seed_service(admin_client, templates=["user-auth", "smime", "wifi"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

__all__ = ["USER_SCOPE_PROFILE", "WORKLOAD_GROUP", "SeedError", "profile_id", "seed_service"]

WORKLOAD_GROUP = "lab-user-auth"
USER_SCOPE_PROFILE = "pfx-smime-user"


class SeedError(RuntimeError):
    """The service refused part of the seed data."""


def profile_id(template: str) -> str:
    return f"pfx-{template}"


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    response = client.post(path, json=body)
    # 409: already there (a lab started again on the same run directory).
    if response.status_code >= 400 and response.status_code != 409:
        raise SeedError(f"POST {path}: {response.status_code} {response.text[:300]}")


def seed_service(
    client: httpx.Client,
    *,
    templates: Sequence[str],
    users_per_group: int = 2,
    devices: bool = True,
    key_type: str = "rsa2048",
    mode: str = "hybrid",
) -> None:
    response = client.put("/api/v1/admin/mode", json={"mode": mode})
    if response.status_code >= 400:
        raise SeedError(f"PUT /api/v1/admin/mode: {response.status_code} {response.text[:300]}")
    for template in templates:
        profile = profile_id(template)
        group = f"lab-{template}"
        _post(
            client,
            "/api/v1/admin/profiles",
            {
                "id": profile,
                "key_type": key_type,
                "template": template,
                "validity_days": 365,
                "renewal_threshold_percent": 20,
                "subject_template": "CN={{UserName}}",
                "san_templates": ["email={{EmailAddress}}", "URI=IntuneDeviceId://{{DeviceId}}"],
            },
        )
        _post(client, "/api/v1/admin/groups", {"id": group, "name": f"PFX {template} users"})
        _post(
            client,
            "/api/v1/admin/assignments",
            {"id": f"assign-{template}", "profile_id": profile, "group_id": group},
        )
        for n in range(1, users_per_group + 1):
            user = f"seed-{template}-{n}"
            _post(
                client,
                "/api/v1/admin/users",
                {"id": user, "name": f"Seed {n}", "upn": f"{user}@lab", "email": f"{user}@lab"},
            )
            _post(client, f"/api/v1/admin/groups/{group}/members", {"user_id": user})
            if devices:
                _post(client, "/api/v1/admin/devices", {"id": f"{user}-dev", "user_id": user})
    if "smime" in templates and "user-auth" in templates:  # the workload group exists
        _post(
            client,
            "/api/v1/admin/profiles",
            {
                "id": USER_SCOPE_PROFILE,
                "scope": "user",
                "key_type": key_type,
                "template": "smime",
                "validity_days": 365,
                "renewal_threshold_percent": 20,
                "subject_template": "CN={{UserName}}",
                "san_templates": ["email={{EmailAddress}}"],  # no {{DeviceId}}: shared
            },
        )
        _post(
            client,
            "/api/v1/admin/assignments",
            {"id": "assign-smime-user", "profile_id": USER_SCOPE_PROFILE,
             "group_id": WORKLOAD_GROUP},
        )  # fmt: skip
