"""The drill refuses a paused cluster and says how to resume it."""

from __future__ import annotations

from chaos.drill.preflight import paused_refusal
from election import ClusterStatus, PauseInfo


def test_a_paused_cluster_is_refused_with_the_way_out() -> None:
    running = ClusterStatus("lab", members=(), leader=None, epoch=4)
    assert paused_refusal(running, "127.0.0.1:2181") is None
    paused = ClusterStatus(
        "lab", (), None, 4, paused=PauseInfo("2026-12-02T10:00:00.000Z", "CA work")
    )
    why = paused_refusal(paused, "127.0.0.1:2181")
    assert why is not None
    assert "'lab' is paused since 2026-12-02T10:00:00.000Z (CA work)" in why
    assert "pfxha resume --hosts 127.0.0.1:2181 --cluster lab" in why
