"""Names the workload, observer and nemesis use in the history, in one place.

Operations (invoke, then ok / fail / info):

- ``enroll`` by ``device-<id>``: a device enrolled and targeted; ok value
  ``{"device": id, "requests": [request ids]}``.
- ``checkin`` by ``device-<id>``: ok value ``{"device": id, "delivered":
  [{"request", "serial", "issuer", "epoch", "pfx_ok", "pfx_errors"}]}``.
- ``revoke`` by ``admin``: an admin action from the revocation table; ok value
  ``{"action": name, "device": id}``.

Observations (standalone info events):

- ``leader`` by ``observer``: ZooKeeper's ``/leader`` changed: ``{"name", "epoch"}``
  (``name`` is null when nobody leads).
- ``connectors`` by ``observer``: the service's connector list:
  ``{"active": [names], "epoch": int | null, "quorum": bool, "settled": bool}``;
  ``settled`` is true when the drill says the round has healed.
- ``delivery`` by ``observer``: the service delivered a certificate:
  ``{"request", "serial", "issuer", "epoch", "latency"}``.
- ``fault`` by ``nemesis``: ``{"scenario", "round", "phase": "start" | "heal" | "end", ...}``.
- ``stale-rejected`` by ``observer``: the service's stale-epoch rejection counter.
"""

from __future__ import annotations

__all__ = [
    "ADMIN",
    "CHECKIN",
    "CONNECTORS",
    "DELIVERY",
    "ENROLL",
    "FAULT",
    "LEADER",
    "NEMESIS",
    "OBSERVER",
    "REVOKE",
    "STALE_REJECTED",
    "device_process",
]

ENROLL = "enroll"
CHECKIN = "checkin"
REVOKE = "revoke"
LEADER = "leader"
CONNECTORS = "connectors"
DELIVERY = "delivery"
FAULT = "fault"
STALE_REJECTED = "stale-rejected"

OBSERVER = "observer"
NEMESIS = "nemesis"
ADMIN = "admin"


def device_process(device: str) -> str:
    return f"device-{device}"
