"""The election bench's claim collector on a real UDP socket: late claims apart."""

from __future__ import annotations

import json
import socket

from chaos.bench.election import ClaimCollector
from chaos.launch import wait_for


def test_the_collector_counts_late_claims_apart_from_overlaps() -> None:
    collector = ClaimCollector()
    host, _, port = collector.address.rpartition(":")
    claims = [
        {"name": "m1", "epoch": 7, "checked": 1.0},
        {"name": "m2", "epoch": 8, "checked": 3.0},
        {"name": "m1", "epoch": 7, "checked": 2.0},  # paused after its check: late
        {"name": "m1", "epoch": 7, "checked": 4.0},  # fresh after m2's: two leaders
    ]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for claim in claims:
                sender.sendto(json.dumps(claim).encode(), (host, int(port)))
        wait_for(lambda: collector.claims == len(claims), timeout=5, what="claims received")
    finally:
        collector.close()
    assert collector.late == 1
    assert collector.dual == [{"stale": "m1", "epoch": 7, "current": "m2", "current_epoch": 8}]
