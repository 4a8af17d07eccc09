"""``pfxha drill``: start a lab, run scenarios under a steady workload, report.

    pfxha drill --scenario connector-down,ca-down,both-down --rounds 20 \\
        --out runs/drill --json runs/drill/result.json
    pfxha drill --scenario random --duration 120 --seed 7 --json F   # overlapping faults

``--scenario random`` runs the random nemesis (:mod:`chaos.drill.schedule`,
:mod:`chaos.drill.random_run`): its schedule is printed and written to
``schedule.json`` in the run directory before the first fault.

Exit status 0 when no invariant was violated, 1 when one was, 2 on bad usage
or when the lab could not start. SIGTERM ends a drill as Ctrl-C does: what was
measured so far is written, the lab is stopped, and the exit status is 1.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from chaos.drill._output import live_view, summary_table, write_outputs
from chaos.drill.engine import DrillEngine, DrillSettings, Progress
from chaos.drill.observer import Observer
from chaos.drill.preflight import paused_refusal
from chaos.drill.random_run import RANDOM, RandomDrill
from chaos.drill.result import ScenarioResult
from chaos.drill.scenarios import ALL, ALL_HOSTS, BLIP_S, parse_scenarios, with_blip
from chaos.drill.schedule import Schedule, available_kinds, format_schedule, make_schedule
from chaos.history import History
from chaos.lab.cli import CA_OPTION, HOSTS_OPTION, SINGLE_HOST_LIMITS
from chaos.lab.lab import Lab
from chaos.lab.seed import WORKLOAD_GROUP
from chaos.launch._process import LaunchError
from chaos.launch.links import (
    CA_RTT_OPTION,
    WAN_JITTER_OPTION,
    WAN_RTT_OPTION,
    ZK_RTT_OPTION,
    check_lan,
    check_wan,
)
from chaos.launch.netns import netns_unavailable
from chaos.nemesis import partition_unavailable
from chaos.workload import Workload
from election import read_cluster_status

__all__ = ["drill", "summary_table"]

log = logging.getLogger(__name__)


class _LabDidNotStart(click.ClickException):
    exit_code = 2  # not a verdict on the cluster: no drill ran


class _Termination:
    """SIGTERM raises KeyboardInterrupt once, so it takes Ctrl-C's path: outputs, lab stopped.

    Without it SIGTERM ended the drill at once and left its whole lab running. Once the
    lab is stopping (``quiet``), or after the first one, a SIGTERM is only logged: SIGKILL
    is the way to skip the clean-up.

        termination = _Termination()
        termination.arm()      # before the lab starts
        termination.quiet()    # before lab.stop()
    """

    def __init__(self) -> None:
        self._fired = False
        self._quiet = False

    def arm(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)

    def quiet(self) -> None:
        self._quiet = True

    def _on_term(self, signum: int, _frame: object) -> None:
        if self._fired or self._quiet:
            log.warning("drill: SIGTERM while the lab stops; still stopping it")
            return
        self._fired = True
        raise KeyboardInterrupt(f"signal {signum}")


@click.command("drill")
@click.option(
    "--scenario",
    "scenario_text",
    default="connector-down,ca-down,both-down",
    show_default=True,
    help=f"Comma-separated scenarios, or 'all' ({', '.join(ALL)}; "
    f"with --hosts also {', '.join(n for n in ALL_HOSTS if n not in ALL)}, "
    "without the link cuts), or 'random' (overlapping faults for --duration, from --seed).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.0, min_open=True),
    default=120.0,
    show_default=True,
    help="--scenario random: seconds of faults (every fault heals by then).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="--scenario random: the schedule's seed (the same seed, the same schedule); "
    "default: a fresh one, printed.",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(1, 6),
    default=3,
    show_default=True,
    help="--scenario random: at most this many faults at once.",
)
@click.option("--rounds", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--connectors", type=click.IntRange(2, 9), default=3, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the contract.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write result.json, rounds.json, history.jsonl, report.md, timeline.png here.",
)
@click.option("--session-timeout", type=float, default=1.0, show_default=True)
@click.option("--enroll-rate", type=float, default=3.0, show_default=True, help="Devices/s.")
@click.option("--revoke-every", type=float, default=3.0, show_default=True, help="Seconds.")
@click.option("--hold", type=float, default=None, help="Override how long blocking faults last.")
@click.option(
    "--ca-timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Each connector's timeout for one call to a CA ([[ca]] timeout_s; default: the "
    "connector's, 2 s). Below the session timeout, a stalled CA's call fails while the "
    "other CA can still sign in the same deadline: the delivery is then 'uncertain'.",
)
@click.option(
    "--blip",
    "blip_s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=BLIP_S,
    show_default=True,
    help="How long cut-blip cuts the leader from the service (keep it under the yield threshold).",
)
@click.option(
    "--links/--no-links",
    default=None,
    help="Each connector reaches the service and each CA through its own fault proxy "
    "(single-host only). Default: on when a scenario cuts links.",
)
@WAN_RTT_OPTION
@WAN_JITTER_OPTION
@CA_RTT_OPTION
@ZK_RTT_OPTION
@HOSTS_OPTION
@CA_OPTION
def drill(
    scenario_text: str,
    duration: float,
    seed: int | None,
    max_concurrent: int,
    rounds: int,
    connectors: int,
    json_path: Path | None,
    out: Path | None,
    session_timeout: float,
    enroll_rate: float,
    revoke_every: float,
    hold: float | None,
    ca_timeout: float | None,
    blip_s: float,
    links: bool | None,
    wan_rtt: float | None,
    wan_jitter: float,
    ca_rtt: float | None,
    zk_rtt: float | None,
    hosts: bool,
    ca: str,
) -> None:
    """Run disaster-recovery drills against a fresh lab and check every invariant."""
    if hosts and (why := netns_unavailable()):
        raise click.UsageError(f"--hosts: {why}; use --single-host")
    if hosts and ca != "cfssl":
        raise click.UsageError(f"--ca {ca}: OpenBao runs on the single-host lab only; drop --hosts")
    plan: Schedule | None = None
    if scenario_text.strip() == RANDOM:
        if hosts:
            raise click.UsageError("--scenario random runs on the single-host lab: drop --hosts")
        links = True if links is None else links
        plan = _plan_random(
            seed, duration, connectors, max_concurrent, links=links, ca_cluster=ca == "openbao"
        )
        scenarios = []
    else:
        try:
            scenarios = parse_scenarios(
                scenario_text, topology="hosts" if hosts else "single-host", ca=ca
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--scenario") from exc
    partitioned = any(s.name == "partition" for s in scenarios)
    if partitioned and not hosts and (why := partition_unavailable()):
        raise click.UsageError(f"scenario partition: {why}")
    scenarios = [with_blip(s, blip_s) for s in scenarios]
    needs_links = [s.name for s in scenarios if s.needs_links]
    away = [f"--{n}-rtt" for n, v in (("wan", wan_rtt), ("ca", ca_rtt), ("zk", zk_rtt))
            if v is not None]  # fmt: skip
    if links is None:
        links = bool(needs_links) or bool(away)
    if needs_links and not links:
        raise click.UsageError(f"{', '.join(needs_links)} cut(s) links: drop --no-links")
    if away and not links:
        raise click.UsageError(f"{', '.join(away)} run(s) on the links: drop --no-links")
    check_wan(wan_rtt, wan_jitter)
    check_lan(ca_rtt=ca_rtt, zk_rtt=zk_rtt)
    if links and hosts:
        raise click.UsageError(
            "--links and --wan-rtt/--ca-rtt/--zk-rtt need the single-host topology: drop --hosts"
        )
    if hold is not None:
        from dataclasses import replace

        scenarios = [replace(s, hold_s=hold) if s.kind == "blocking" else s for s in scenarios]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = (out or Path("runs") / f"drill-{stamp}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    termination = _Termination()
    termination.arm()
    # The summary goes to stdout, wide enough to read in a log file too.
    report_console = Console(width=None if sys.stdout.isatty() else 140)
    command = "pfxha drill " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    if plan is not None:
        (out_dir / "schedule.json").write_text(json.dumps(plan.to_json(), indent=2) + "\n")
        report_console.print(format_schedule(plan), markup=False, highlight=False)
        report_console.print(f"schedule: {out_dir / 'schedule.json'}")

    history = History(path=out_dir / "history.jsonl")
    # The history and the live view say what happens; per-request client logs would drown it.
    # (kazoo warns on every refused reconnect while the drill kills ZooKeeper nodes.)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    lab = Lab(
        out_dir / "lab",
        connectors=connectors,
        session_timeout=session_timeout,
        seed_devices=False,
        hosts=hosts,
        ca=ca,
        links=links,
        wan_rtt=wan_rtt,
        wan_jitter=wan_jitter,
        ca_rtt=ca_rtt,
        zk_rtt=zk_rtt,
        ca_timeout=ca_timeout,
    )
    progress = Progress()
    results: list[ScenarioResult] = []
    console.print(
        f"[bold]pfxha drill[/]: starting the lab ({lab.topology}, CAs on {ca}) in {lab.run_dir} ..."
    )
    if not hosts:
        console.print(SINGLE_HOST_LIMITS, style="dim")
    try:
        lab.start()
    except LaunchError as exc:
        history.close()
        raise _LabDidNotStart(f"the lab did not start: {exc}") from exc
    try:
        if why := paused_refusal(read_cluster_status(lab.zk.hosts, lab.cluster), lab.zk.hosts):
            raise _LabDidNotStart(why)
        results = _run(lab, history, scenarios, rounds, progress, console, session_timeout,
                       enroll_rate, revoke_every, plan)  # fmt: skip
        certificates = lab.service_db().certificates_exercised()
    finally:
        termination.quiet()
        lab.stop()
        history.close()
    data = write_outputs(
        results, history, out_dir, json_path, command, lab.topology, certificates, ca
    )
    report_console.print(summary_table(results))
    report_console.print(f"report: {out_dir / 'report.md'}  timeline: {out_dir / 'timeline.png'}")
    for result in results:
        for violation in result.all_violations():
            report_console.print(f"[red]violation[/] {result.name}: {violation}")
    if not data["ok"]:
        sys.exit(1)


def _run(
    lab: Lab,
    history: History,
    scenarios: list[Any],
    rounds: int,
    progress: Progress,
    console: Console,
    session_timeout: float,
    enroll_rate: float,
    revoke_every: float,
    plan: Schedule | None = None,
) -> list[ScenarioResult]:
    assert lab.service is not None
    db = lab.service_db()
    client = lab.service.admin_client(timeout=10.0)
    read_client = lab.service.admin_client(timeout=2.0)
    read_lock = threading.Lock()

    def fetch_connectors() -> list[dict[str, Any]]:
        with read_lock:
            reply = read_client.get("/api/v1/read/connectors")
        reply.raise_for_status()
        data = reply.json()
        return data if isinstance(data, list) else []

    def requests_of(device: str) -> list[str]:
        rows = db.rows("SELECT id FROM requests WHERE device_id = ? ORDER BY seq", (device,))
        return [str(r["id"]) for r in rows]

    def devices_due() -> set[str]:
        rows = db.rows(
            "SELECT DISTINCT device_id FROM requests WHERE scope = 'device' AND "
            "((state IN ('issued', 'delivered') AND cancelled IS NULL AND revocation IS NULL) "
            "OR device_delete = 'pending')"
        )
        return {str(r["device_id"]) for r in rows} | db.devices_due_user_copies()

    observer = Observer(
        history,
        zk_hosts=lab.zk.hosts,
        cluster=lab.cluster,
        service_db=db,
        connectors=fetch_connectors,
    )
    workload = Workload(
        history,
        client,
        requests_of,
        lab.cas.root_certificate,
        group=WORKLOAD_GROUP,
        enroll_per_s=enroll_rate,
        revoke_every_s=revoke_every,
        devices_due=devices_due,
    )
    engine = (RandomDrill if plan is not None else DrillEngine)(
        lab, history, observer, workload, db, DrillSettings(session_timeout=session_timeout),
        progress,
    )  # fmt: skip
    results: list[ScenarioResult] = []
    observer.start()
    workload.start()
    try:
        with Live(
            get_renderable=lambda: live_view(progress),
            console=console,
            refresh_per_second=4,
            transient=True,
        ):
            if plan is not None and isinstance(engine, RandomDrill):
                results.append(engine.run_random(plan))
            for scenario in scenarios:
                if engine.wedged:
                    skipped = ScenarioResult(scenario.name)
                    skipped.violations.append(f"not run: the lab wedged earlier ({engine.wedged})")
                    results.append(skipped)
                    continue
                results.append(engine.run_scenario(scenario, rounds))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: writing what was measured so far")
        unfinished = ScenarioResult(progress.scenario or "drill")
        unfinished.violations.append("drill interrupted before this scenario finished")
        results = [*results, unfinished]
    finally:
        workload.close()
        observer.stop()
        client.close()
        read_client.close()
    return results


def _plan_random(
    seed: int | None,
    duration: float,
    connectors: int,
    max_concurrent: int,
    *,
    links: bool,
    ca_cluster: bool = False,
) -> Schedule:
    """The random nemesis's schedule; kinds this lab cannot make are left out."""
    seed = secrets.randbelow(2**31) if seed is None else seed
    kinds = available_kinds(
        links=links, partition=partition_unavailable() is None, ca_cluster=ca_cluster
    )
    try:
        return make_schedule(
            seed=seed,
            duration_s=duration,
            kinds=kinds,
            connectors=connectors,
            max_concurrent=max_concurrent,
        )
    except ValueError as exc:
        raise click.UsageError(f"--scenario random: {exc}") from exc
