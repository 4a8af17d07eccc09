"""Fixtures for the election integration tests (ensembles come from tests/fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.launch.zookeeper import ZooKeeperEnsemble
from tests.integration.election.support import Members, Pool


@pytest.fixture
def pool(zk_ensemble: ZooKeeperEnsemble, unique_cluster: str) -> Iterator[Pool]:
    p = Pool(zk_ensemble.hosts, unique_cluster)
    yield p
    p.stop()


@pytest.fixture
def members(
    zk_ensemble: ZooKeeperEnsemble, unique_cluster: str, tmp_path: Path
) -> Iterator[Members]:
    m = Members(zk_ensemble.hosts, unique_cluster, tmp_path)
    yield m
    m.stop()
