"""A holder's name heartbeating as a standby (its process restarted) is not shown active."""

from __future__ import annotations

import httpx

from chaos.launch.service import ServiceProcess
from connector.service_client import ServiceClient
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import ok


def _roles(admin: httpx.Client) -> dict[str, str]:
    return {c["name"]: c["role"] for c in ok(admin.get("/api/v1/read/connectors"))}


def test_restarted_holder_standing_by_is_not_active(
    service: ServiceProcess, admin: httpx.Client
) -> None:
    name = unique("conn")
    epoch = next_epoch(admin)
    with ServiceClient(service.url) as client:
        client.register(name, epoch)
        assert client.heartbeat(name, epoch, "healthy", {}) == "active"
        assert _roles(admin)[name] == "active"
        # The process was killed and came back as a standby under the same name.
        assert client.heartbeat(name, 0, "healthy", {}) == "standby"
        assert _roles(admin)[name] == "standby"
        # Elected again, it registers a new epoch and is active again.
        client.register(name, epoch + 1)
        assert _roles(admin)[name] == "active"
