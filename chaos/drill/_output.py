"""The drill's terminal output and its files: the summary table, the live view, the outputs.

    report_console.print(summary_table(results))               # one row a scenario
    with Live(get_renderable=lambda: live_view(progress)): ...  # while the drill runs
    data = write_outputs(results, history, out_dir, json_path, command, topology,
                         certificates, ca)  # result.json, rounds.json, report.md, timeline.png
    if not data["ok"]: ...

Used by :mod:`chaos.drill.cli` (``pfxha drill``); ``summary_table`` is also
importable from there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
from rich.console import Group
from rich.table import Table
from rich.text import Text

from chaos.drill.engine import Progress
from chaos.drill.report import plot_timeline, write_report
from chaos.drill.result import ScenarioResult, write_contract, write_rounds
from chaos.history import History

__all__ = ["live_view", "summary_table", "write_outputs"]

log = logging.getLogger(__name__)


def summary_table(results: list[ScenarioResult], title: str = "pfxha drill") -> Table:
    table = Table(title=title)
    for column in ("scenario", "rounds", "failover p50 s", "p99 s", "max s", "requests",
                   "lost", "dup", "stale 409", "leader chg", "violations"):  # fmt: skip
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for r in results:
        bad = len(r.all_violations())
        table.add_row(
            r.name,
            str(len(r.rounds)),
            *r.failover_cells(),
            f"{r.delivered}/{r.created}",
            str(r.lost),
            str(r.duplicates),
            str(r.stale_epoch_rejected),
            str(r.leader_changes),
            Text(str(bad), style="bold red" if bad else "green"),
        )
    return table


def live_view(progress: Progress) -> Group:
    with progress.lock:
        done = list(progress.results)
        last = progress.last
        line = Text(
            f"{progress.scenario}  round {progress.round}/{progress.rounds}  [{progress.phase}]",
            style="bold",
        )
    parts: list[Any] = [summary_table(done, title="done so far")] if done else []
    if last is not None:
        failover = "-" if last.failover_s is None else f"{last.failover_s:.3f}s"
        leader = "-" if last.new_leader_s is None else f"{last.new_leader_s:.3f}s"
        line.append(
            f"   last: {last.scenario} #{last.round} failover {failover}, new leader {leader}"
            + (f", {len(last.violations)} violation(s)" if last.violations else ""),
            style="dim",
        )
    parts.append(line)
    return Group(*parts)


def write_outputs(
    results: list[ScenarioResult],
    history: History,
    out_dir: Path,
    json_path: Path | None,
    command: str,
    topology: str,
    certificates: dict[str, dict[str, int]],
    ca: str = "cfssl",
) -> dict[str, Any]:
    data = write_contract(
        results, out_dir / "result.json", topology=topology, certificates=certificates, ca=ca
    )
    if json_path is not None and json_path.resolve() != (out_dir / "result.json"):
        write_contract(results, json_path, topology=topology, certificates=certificates, ca=ca)
    write_rounds(results, out_dir / "rounds.json")
    write_report(results, out_dir / "report.md", command=command)
    try:
        plot_timeline(history.snapshot(), out_dir / "timeline.png", title=command)
    except (ValueError, RuntimeError, httpx.HTTPError) as exc:  # a plot must not hide results
        log.warning("timeline plot failed: %s", exc)
    return data
