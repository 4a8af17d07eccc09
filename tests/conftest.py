"""Tier markers follow the directory: tests/unit, tests/integration, tests/e2e."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from chaos.launch._process import PORT_RANGE_ENV, _ephemeral_floor

# CI must not go red by chance: there every property test replays the same
# examples (derandomized). Runs elsewhere keep exploring new inputs; a failure
# they find is a bug to fix and then an explicit @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

# pytest-xdist (`make test` runs two workers): each worker and every lab process it
# starts picks server ports from a range of its own (chaos.launch._process).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _index, _count = int(_WORKER[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _floor = _ephemeral_floor()
    _span = (_floor - 10000) // max(_count, 1)
    _low = 10000 + _index * _span
    os.environ[PORT_RANGE_ENV] = f"{_low}-{_low + _span}"

# Shared fixtures, one module per real server, usable from every tier.
pytest_plugins = [
    "tests.fixtures.zookeeper",
    "tests.fixtures.postgres",
    "tests.fixtures.cfssl",
    "tests.fixtures.openbao",
    "tests.fixtures.service",
    "tests.fixtures.prometheus",
]

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
