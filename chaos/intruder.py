"""The ``intruder`` drill scenario: callers that cannot prove who they are try to
take over, and must all be refused without disturbing the active connector.

    details = intrude(lab, leader)
    # {"attempts": 40, "refused": 40, "attacks": {"ca primary: anonymous newcert": "refused",
    #  ..., "revoked leader: replaced": "survived"}, "revoked_leader_replaced_s": 0.05}

Attacks (each must fail):

* a rogue process **without a connector certificate** registers with an epoch
  far above the highest (as itself and as the leader), polls and uploads;
* a rogue with a **self-signed client certificate** registers (refused by TLS);
* a **revoked connector** (enrolled, then revoked by the admin) registers with
  a higher epoch, polls and uploads;
* a ZooKeeper client **without credentials** deletes ``/leader``, joins the
  election line, bumps ``/epoch``, writes a member node;
* (issue 18) at **each issuing CA**, without a client certificate, with a
  certificate of another CA, and with an access-CA certificate whose CN is not
  allowed: ``newcert``, ``revoke`` of a live certificate, ``removeFromCRL`` of
  a revoked one, ``init_ca`` (and plain HTTP);
* a **forging connector** (enrolled, valid certificate) registers an epoch
  beyond the epoch-advance budget and one above the bound (2^48);
* **slow clients**: 256 connections that never finish a request head, while
  the service must still answer ``/healthz``;
* a **compromised member** (a standby's own ZooKeeper identity, which may write)
  puts an unreadable ``/switchover`` (dropped, no leadership change) and sets
  ``/epoch`` to 2^62 (the next take repairs it and stays within the bound).

Afterwards ZooKeeper's leader and epoch and the service's highest epoch must be
unchanged. Then the **revoked leader** round: a connector added for it
(its own CA client certificate, ZooKeeper identity and enrollment) is made the
leader, and the admin revokes it (service, ZooKeeper, CA): a standby must lead
within the connector-down target (0.5 s), and the revoked member's ZooKeeper
writes and CA calls must be refused. Any attempt that was not refused raises
:class:`FaultError` (the drill records it as a violation of the round); the
details list every attack as ``refused`` or ``survived``.

The attacks live by target: :mod:`chaos._intruder_service`,
:mod:`chaos._intruder_ca` and :mod:`chaos._intruder_cluster` (ZooKeeper, the
compromised member, the revoked leader), each judged by the verdicts of
:mod:`chaos._intruder_refusals`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from chaos._intruder_ca import ca_attacks, cfssl_of
from chaos._intruder_cluster import (
    REPLACE_TARGET_S,
    coordination_data_attacks,
    revoked_leader,
    zookeeper_attacks,
)
from chaos._intruder_service import (
    forged_epoch_attacks,
    highest_epoch,
    service_attacks,
    slow_client_attack,
)
from chaos.launch.service import ServiceProcess
from chaos.nemesis import FaultError
from election import read_cluster_status

__all__ = ["REPLACE_TARGET_S", "intrude"]

# Attacks that are outlived rather than refused (the report says "survived").
_SURVIVED = ("slow clients", "replaced by the cluster", "never leads again", "compromised member")


def intrude(lab: Any, leader: str) -> dict[str, Any]:
    """Run every attack against ``lab`` (a secure :class:`chaos.lab.lab.Lab`)."""
    if not getattr(lab, "secure", False) or lab.service is None or lab.service_ca is None:
        raise FaultError("the intruder scenario needs a secure lab (Lab(secure=True))")
    service: ServiceProcess = lab.service
    before = read_cluster_status(lab.zk.hosts, lab.cluster)
    if before.leader is None:
        raise FaultError("no leader to attack")
    service_epoch = highest_epoch(service)
    with tempfile.TemporaryDirectory(prefix="pfxha-intruder-") as tmp:
        results = service_attacks(
            service, Path(lab.service_ca), leader, before.leader.epoch, Path(tmp)
        )
        if (cfssl := cfssl_of(lab.cas)) is not None:
            results.update(ca_attacks(cfssl, Path(tmp)))
        results.update(
            forged_epoch_attacks(
                service, Path(lab.service_ca), max(service_epoch, before.leader.epoch), Path(tmp)
            )
        )
    results.update(zookeeper_attacks(lab.zk.hosts, lab.cluster))
    results.update(slow_client_attack(service))
    after = read_cluster_status(lab.zk.hosts, lab.cluster)
    disturbed: list[str] = []
    notes: list[str] = []
    # The same member in the same session may resume under the next epoch: its own
    # ZooKeeper connection was suspended (a loaded machine) and came back with the
    # lease still held. Nobody else led and nothing forged an epoch, so it is no
    # intrusion; any other change of who leads, or how, is.
    same_holder = after.leader is not None and (
        after.leader.name,
        after.leader.session_id,
        after.leader.node,
    ) == (before.leader.name, before.leader.session_id, before.leader.node)
    if not same_holder or after.leader is None or after.leader.epoch < before.leader.epoch:
        disturbed.append(f"ZooKeeper leader changed: {before.leader} -> {after.leader}")
    elif after.leader.epoch != before.leader.epoch:
        notes.append(
            f"{after.leader.name} resumed its lease under epoch {after.leader.epoch} "
            f"(was {before.leader.epoch}): its ZooKeeper connection was suspended"
        )
    real_epoch = after.leader.epoch if after.leader is not None else before.leader.epoch
    if highest_epoch(service) > max(service_epoch, real_epoch):
        disturbed.append("the service's highest epoch moved past the real leader's")
    results.update(coordination_data_attacks(lab))
    revoked, facts = revoked_leader(lab)
    results.update(revoked)
    accepted = {attack: outcome for attack, outcome in results.items() if outcome is not None}
    if accepted or disturbed:
        raise FaultError(
            "intruder not refused: "
            + "; ".join([f"{a}: {o}" for a, o in accepted.items()] + disturbed)
        )
    return {
        "attempts": len(results),
        "refused": len(results),
        "attacks": {
            attack: "survived" if any(w in attack for w in _SURVIVED) else "refused"
            for attack in sorted(results)
        },
        **facts,
        **({"notes": notes} if notes else {}),
    }
