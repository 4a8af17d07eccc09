"""The flow benchmark's CPU accounting and its split of CPUs for ``--isolate``."""

from __future__ import annotations

import os
import time

import pytest
from prometheus_client import generate_latest

from chaos.bench._cpu import CpuMeter, process_cpu_seconds
from chaos.bench.flow import keygen_cpu_so_far, split_cpus
from connector.metrics import ConnectorMetrics


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_meter_counts_only_inside_its_windows() -> None:
    # /proc/<pid>/stat counts CPU in scheduler ticks (10 ms), sampled: a window's
    # reading can be off by a few ticks either way (once 0.08 s for 0.1 s burned).
    # So the windows hold 0.2 s and the burn between them 0.5 s: a meter that
    # counts inside only reads 0.2 s give or take 8 ticks; one that also counted
    # outside would read at least 0.62 s. No sampling error bridges that gap.
    meter = CpuMeter({"me": [os.getpid()]})
    meter.start()
    burn(0.1)
    meter.stop()
    burn(0.5)  # outside any window: not counted
    meter.start()
    burn(0.1)
    meter.stop()
    counted = meter.totals()["me"]
    assert 0.12 <= counted <= 0.28
    assert meter.per_item(10)["me"] == pytest.approx(1000 * counted / 10, rel=0.02)


def test_a_process_that_is_gone_counts_up_to_its_last_reading() -> None:
    assert process_cpu_seconds(2**22 + 12345) is None  # above the kernel's pid limit
    meter = CpuMeter({"gone": [2**22 + 12345]})
    meter.start()
    meter.stop()
    assert meter.totals() == {"gone": 0.0}
    with pytest.raises(RuntimeError, match="without start"):
        meter.stop()


def test_isolation_gives_the_connector_half_the_cpus() -> None:
    assert split_cpus([0, 1]) == ([0], [1])
    assert split_cpus([0, 1, 2, 3, 4]) == ([0, 1], [2, 3, 4])
    with pytest.raises(ValueError, match="at least two CPUs"):
        split_cpus([0])


def test_keygen_cpu_is_read_from_a_connectors_metrics_by_key_type() -> None:
    metrics = ConnectorMetrics(name="a", cluster="c")
    metrics.observe_key_generation(0.07, key_type="rsa2048")
    metrics.observe_key_generation(0.05, key_type="rsa2048")
    metrics.observe_key_generation(0.001, key_type="p256")
    text = generate_latest(metrics.registry).decode()

    cpu, keys = keygen_cpu_so_far(text, "RSA-2048")
    assert keys == 2
    assert abs(cpu - 0.12) < 1e-9
    assert keygen_cpu_so_far(text, "p384") == (0.0, 0)
