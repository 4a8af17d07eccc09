"""A short drill of every scenario (one round each) on one real lab: zero violations.

Real ZooKeeper x3, real CFSSL CAs, the real service and three real connector
processes; the checkers read the service DB, the certdbs and the CRLs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from chaos.drill.scenarios import ALL, SCENARIOS
from chaos.history import read_history
from chaos.launch.netns import NETWORK_FILE, netns_unavailable
from chaos.nemesis import partition_unavailable

pytestmark = pytest.mark.timeout(400)


def _drill(out: Path, *args: str) -> dict[str, Any]:
    """``pfxha drill ARGS --rounds 1`` into ``out``; it must exit 0. Returns its contract."""
    contract_path = out.parent / "contract.json"
    result = subprocess.run(
        [
            sys.executable, "-c", "from connector.cli import main; main()",
            "drill", *args, "--rounds", "1", "--out", str(out), "--json", str(contract_path),
        ],
        capture_output=True,
        text=True,
        timeout=380,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    contract: dict[str, Any] = json.loads(contract_path.read_text())
    assert contract["ok"] is True
    assert json.loads((out / "result.json").read_text()) == contract
    return contract


def _pids_running_from(out: Path) -> list[int]:
    """Processes whose command line names a path under ``out`` (every part of a drill's lab).

    PostgreSQL's data may live in a short path elsewhere, whose ``owner`` file names the lab.
    """
    homes = Path(tempfile.gettempdir()).glob("pfxha-pg/*/owner")
    marks = [str(out).encode()] + [
        str(owner.parent).encode() for owner in homes if str(out) in owner.read_text()
    ]
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            if any(mark in cmdline for mark in marks):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return pids


def _described(pids: list[int]) -> list[str]:
    """Each pid with its parent and command line (what a failure must show)."""
    out = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        out.append(f"{pid} (parent {ppid}): {cmdline[:300]}")
    return out


def test_sigterm_ends_the_drill_and_stops_its_lab(tmp_path: Path) -> None:
    """SIGTERM takes Ctrl-C's path: the lab is stopped and the exit status is 1.

    Before, the drill died at once (exit 143) and left ZooKeeper, CFSSL, PostgreSQL, the
    service and the connectors running. The signal comes as soon as the lab's first
    server runs (a whole lab takes tens of seconds to start on a loaded machine); a
    drill signalled mid-scenario takes the same handler.
    """
    out = tmp_path / "drill"
    drill = subprocess.Popen(
        [
            sys.executable, "-c", "from connector.cli import main; main()", "drill",
            "--scenario", "connector-down", "--rounds", "50", "--connectors", "2",
            "--no-links", "--out", str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not [pid for pid in _pids_running_from(out) if pid != drill.pid]:
            assert drill.poll() is None, drill.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the drill started no lab server in 60 s"
            time.sleep(0.1)
        drill.send_signal(signal.SIGTERM)
        output = drill.communicate(timeout=60)[0]
        assert drill.returncode == 1, (drill.returncode, output[-3000:])
        # A process the drill was starting when the signal came may take a moment
        # to go (a fresh-clone CI run found one left just after the drill exited,
        # gone later): gone within seconds passes, left running fails.
        gone_by = time.monotonic() + 10
        while (left := _pids_running_from(out)) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert left == [], (_described(left), output[-3000:])
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait()
        for pid in _pids_running_from(out):  # what a failed run left behind
            os.kill(pid, signal.SIGKILL)


def test_every_scenario_one_round_without_violations(tmp_path: Path) -> None:
    scenarios = [s for s in ALL if s != "partition" or partition_unavailable() is None]
    # The gray failures (issue 13) run on the link proxies; service-cut, ca-cut and cascade
    # pass only once leaders yield on unreachable work, and the two controls cost ~15 s of
    # suite time: their parts are unit- and integration-tested (test_gray_scenarios,
    # test_link_faults, test_link_cut).
    scenarios = [s for s in scenarios if not SCENARIOS[s].needs_links]
    out = tmp_path / "drill"
    contract = _drill(out, "--scenario", ",".join(scenarios))
    assert list(contract["scenarios"]) == scenarios
    for name, body in contract["scenarios"].items():
        assert body["rounds"] == 1, name
        assert body["violations"] == [], name
        assert body["requests"]["lost"] == 0, name
        assert body["duplicates"] == 0, name
        # A measured recovery, within a loose sanity bound (speed lives in `make drill`).
        assert 0 < body["failover_s"]["max"] < 15, name
        assert body["requests"]["created"] >= 1, name
    # A hung CA: the kill waited for a key given up on; every late certificate the CA
    # recorded for such keys was revoked (a valid one is a violation, checked above).
    for name in ("ca-stall", "ca-stall-kill"):
        late = contract["scenarios"][name]["late"]
        assert late["revoked"] == late["certificates"], name
    assert contract["scenarios"]["ca-stall-kill"]["late"]["keys_in_doubt"] >= 1
    # Issue 18: the intruder's report lists every attack, each refused or survived.
    attacks = contract["scenarios"]["intruder"]["attacks"]
    assert len(attacks) >= 40
    assert set(attacks.values()) == {"refused", "survived"}

    # The user-scoped S/MIME profile was exercised (its checkers ran in every scenario).
    user = contract["certificates"]["user"]
    assert user["delivered"] > 0
    assert user["devices"] >= user["users"] > 0
    assert contract["certificates"]["device"]["delivered"] > 0
    assert "Verdict: **OK**" in (out / "report.md").read_text()
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    events = read_history(out / "history.jsonl")
    faults = [e for e in events if e.f == "fault" and e.value.get("phase") == "start"]
    assert [e.value["scenario"] for e in faults] == scenarios
    assert any(e.f == "checkin" and e.type == "ok" for e in events)
    assert any(e.f == "revoke" and e.type == "ok" for e in events)
    # Nothing of the lab is left running.
    lab_pids = [
        line.split()[0]
        for line in subprocess.run(
            ["ps", "-eo", "pid,args"], capture_output=True, text=True
        ).stdout.splitlines()
        if str(out) in line
    ]
    assert lab_pids == []


@pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable()))
def test_host_faults_on_the_hosts_lab_without_violations(tmp_path: Path) -> None:
    """Each part in its own network namespace; a host crash and a host cut heal."""
    scenarios = ["connector-down", "host-crash", "host-isolate", "partition"]
    out = tmp_path / "drill"
    contract = _drill(out, "--hosts", "--scenario", ",".join(scenarios))
    assert contract["topology"] == "hosts"
    assert list(contract["scenarios"]) == scenarios
    for name, body in contract["scenarios"].items():
        assert body["violations"] == [], name
        assert body["requests"]["lost"] == 0, name
        assert 0 < body["failover_s"]["max"] < 15, name
    # The lab removed its hosts: none of its namespaces is left, nor its record.
    namespaces = json.loads((out / "lab" / "endpoints.json").read_text())["namespaces"]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert namespaces
    assert not set(namespaces.values()) & {line.split()[0] for line in listed.splitlines() if line}
    assert not (out / "lab" / NETWORK_FILE).exists()
