"""Many rounds of random crashes, graceful stops and pauses, judged by an independent watcher."""

from __future__ import annotations

import random
from pathlib import Path

from chaos.bench.election import BenchSettings, run_election_bench
from chaos.launch.zookeeper import ZooKeeperEnsemble


def test_random_kills_never_give_two_leaders_and_epochs_only_grow(
    zk_ensemble: ZooKeeperEnsemble, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    result = run_election_bench(
        BenchSettings(
            members=3,
            rounds=8,
            modes=["random"],
            hosts=zk_ensemble.hosts,
            run_dir=tmp_path,
            seed=seed,
            settle_s=0.2,
        )
    )
    assert len(result["per_round"]) == 8, f"seed {seed}"
    assert result["dual_leader_observations"] == 0, (seed, result["dual_leader_details"])
    assert result["epochs_strictly_increasing"], f"seed {seed}"
    assert result["leaderships_observed"] >= 9
    # Every round handed the lease to another member with a higher epoch.
    for entry in result["per_round"]:
        assert entry["successor"] != entry["victim"]
        assert entry["new_epoch"] > entry["old_epoch"]
    assert result["claims_received"] > 0
