"""A registration answers with the stale intents and, on request, a first poll (one round trip).

Fencing is unchanged: the reads ride under the epoch just registered, and a stale
registration is refused (409) without leasing any request.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from chaos.launch.service import ServiceProcess
from connector.service_client import ServiceClient, StaleEpochError, UploadItem
from tests.fixtures.service import next_epoch, unique
from tests.integration.service.helpers import MiniCA, build_world, issue_for, new_key, public_pem


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[ServiceClient]:
    with ServiceClient(service.url, timeout=10) as c:
        yield c


def test_registration_lists_stale_intents_and_polls_a_first_batch(
    admin: httpx.Client, client: ServiceClient
) -> None:
    world = build_world(admin, unique, devices=3)
    old, new = unique("old"), unique("new")
    epoch = next_epoch(admin)
    client.register(old, epoch)
    mine = [r for r in client.poll_requests(old, epoch, 500, 0) if r.device_id in world.devices]
    assert len(mine) == 3
    held = mine[0]
    client.record_intent(old, epoch, held.id, public_pem(new_key()))

    reply = client.register(new, epoch + 1, max_items=500)
    # The intent the old epoch left in flight, as /intents/stale lists it.
    assert held.id in {i.request_id for i in reply.intents}
    assert reply.intents == client.inflight_intents(new, epoch + 1)
    # Its leases do not hold the new epoch back; the request in flight is not offered.
    first = {r.id for r in reply.requests}
    assert {r.id for r in mine[1:]} <= first
    assert held.id not in first
    # Leased to the new epoch: a poll right after does not offer them again.
    again = {r.id for r in client.poll_requests(new, epoch + 1, 500, 0)}
    assert not again & first

    # Without max_items: the intents, no poll.
    plain = client.register(new, epoch + 2)
    assert plain.requests == []
    assert held.id in {i.request_id for i in plain.intents}


def test_a_stale_registration_is_refused_and_leases_nothing(
    admin: httpx.Client, client: ServiceClient
) -> None:
    old, new = unique("old"), unique("new")
    epoch = next_epoch(admin)
    client.register(new, epoch + 1)
    world = build_world(admin, unique, devices=2)
    with pytest.raises(StaleEpochError):
        client.register(old, epoch, max_items=500)
    offered = [
        r for r in client.poll_requests(new, epoch + 1, 500, 0) if r.device_id in world.devices
    ]
    assert len(offered) == 2


def test_registration_tells_the_keys_of_recent_intents_given_up_on(
    admin: httpx.Client, client: ServiceClient
) -> None:
    """A requeued request's old key (and one replaced by a newer intent) comes back
    with ``superseded_within_s``; the current intent's key never does."""
    world = build_world(admin, unique, devices=2)
    old, new = unique("old"), unique("new")
    epoch = next_epoch(admin)
    client.register(old, epoch)
    mine = [r for r in client.poll_requests(old, epoch, 500, 0) if r.device_id in world.devices]
    requeued, current = mine
    given_up, kept = public_pem(new_key()), public_pem(new_key())
    client.record_intent(old, epoch, requeued.id, given_up)
    client.record_intent(old, epoch, current.id, kept)
    # A sign call that failed ambiguously: requeued, and its key given up on.
    client.fail_request(old, epoch, requeued.id, "ambiguous CA failure", retryable=True)

    reply = client.register(new, epoch + 1, superseded_within_s=30.0)
    mine_only = [s for s in reply.superseded if s.request_id in {r.id for r in mine}]
    assert [(s.request_id, s.epoch, s.public_key_pem) for s in mine_only] == [
        (requeued.id, epoch, given_up)
    ]
    assert 0.0 <= mine_only[0].age_s < 30.0
    # The new epoch issues it anew under another key: the old one stays given up on,
    # the new one is current.
    (again,) = [r for r in client.poll_requests(new, epoch + 1, 500, 0) if r.id == requeued.id]
    client.record_intent(new, epoch + 1, again.id, public_pem(new_key()))
    later = client.register(new, epoch + 2, superseded_within_s=30.0)
    assert [s.public_key_pem for s in later.superseded if s.request_id in {r.id for r in mine}] == [
        given_up
    ]
    # Not asked, or a window that ended: nothing.
    assert client.register(new, epoch + 3).superseded == []
    assert not [
        s
        for s in client.register(new, epoch + 4, superseded_within_s=1e-6).superseded
        if s.request_id in {r.id for r in mine}
    ]


def test_registration_lists_keys_delivered_while_another_ca_may_sign_them_late(
    admin: httpx.Client, client: ServiceClient
) -> None:
    """A result uploaded as ``uncertain`` (another CA's answer for the key was lost) comes
    back to a new leader with the delivered certificate to keep; a certain one does not."""
    world = build_world(admin, unique, devices=3)
    old, new = unique("old"), unique("new")
    epoch = next_epoch(admin)
    client.register(old, epoch)
    mine = sorted(
        (r for r in client.poll_requests(old, epoch, 500, 0) if r.device_id in world.devices),
        key=lambda r: r.id,
    )
    single, batched, certain = mine
    ca, kra = MiniCA(), client.kra_certificate()
    issued = {r.id: issue_for(r, ca, kra) for r in mine}
    for r in mine:
        client.record_intent(old, epoch, r.id, public_pem(issued[r.id].key))
    one = issued[single.id]
    client.upload_result(
        old, epoch, single.id, one.envelope, one.cert.serial_number, ca.name, uncertain=True
    )
    outcomes = client.upload_results(
        old,
        epoch,
        [
            UploadItem(
                batched.id,
                issued[batched.id].envelope,
                issued[batched.id].cert.serial_number,
                ca.name,
                uncertain=True,
            ),
            UploadItem(
                certain.id,
                issued[certain.id].envelope,
                issued[certain.id].cert.serial_number,
                ca.name,
            ),
        ],
    )
    assert outcomes == {batched.id: None, certain.id: None}

    reply = client.register(new, epoch + 1, superseded_within_s=30.0)
    listed = {u.request_id: u for u in reply.uncertain if u.request_id in {r.id for r in mine}}
    assert sorted(listed) == sorted([single.id, batched.id])
    for request_id, entry in listed.items():
        assert entry.epoch == epoch
        assert entry.public_key_pem == public_pem(issued[request_id].key)
        assert (entry.ca_name, entry.serial) == (ca.name, issued[request_id].cert.serial_number)
        assert 0.0 <= entry.age_s < 30.0
    # Delivered keys are their requests' current intents: never "given up on".
    assert not [s for s in reply.superseded if s.request_id in {r.id for r in mine}]
    # Not asked, or a window that ended: nothing.
    assert client.register(new, epoch + 2).uncertain == []
    assert not [
        u
        for u in client.register(new, epoch + 3, superseded_within_s=1e-6).uncertain
        if u.request_id in {r.id for r in mine}
    ]
