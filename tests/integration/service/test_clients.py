"""AdminClient and DeviceClient against the real service: what workloads and drills use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos.launch.service import ServiceProcess
from chaos.service.clients import AdminClient, ApiRefused, DeviceClient
from connector.service_client import ServiceClient
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import FakeConnector


@pytest.fixture
def admin_client(service: ServiceProcess) -> Iterator[AdminClient]:
    with AdminClient(service.url) as client:
        yield client


def test_device_sync_installs_then_deletes(
    service: ServiceProcess, admin_client: AdminClient
) -> None:
    profile, user, group = unique("p"), unique("u"), unique("g")
    admin_client.create_profile(profile, key_type="p256", validity_days=30)
    admin_client.create_user(user, "Ann", f"{user}@corp.test", f"{user}@corp.test")
    admin_client.create_group(group, "Staff")
    assert admin_client.add_member(group, user) == 0
    creds = admin_client.create_device(unique("d"), user)
    assert admin_client.create_assignment(unique("a"), profile, group) == 1
    with pytest.raises(ApiRefused) as refused:
        admin_client.create_user(user, "again", "x@y", "x@y")
    assert refused.value.status == 409

    with ServiceClient(service.url) as client, service.admin_client() as http:
        connector = FakeConnector(client, unique("conn"), next_epoch(http))
        issued = connector.issue([creds.device_id])[creds.device_id]
    device = DeviceClient(service.url, creds)
    first = device.sync()
    (pfx,) = first.installed
    assert pfx.certificate == issued.cert
    assert pfx.chain == (connector.ca.cert,)
    assert device.store[profile].serial == issued.cert.serial_number
    assert admin_client.requests(device_id=creds.device_id)[0]["state"] == "installed"

    admin_client.action("retire-user", device_id=creds.device_id)
    second = device.sync()
    assert second.deleted == [issued.cert.serial_number]
    assert device.store == {}
    assert device.sync().deleted == []  # reported deleted: not asked again
    (req,) = admin_client.requests(device_id=creds.device_id)
    assert req["device_delete"] == "done"
    assert req["revocation"] == "pending"
    device.close()
