"""``pfxha lab up|status|down``: a whole cluster on this machine, in the background.

    pfxha lab up --connectors 3 --dir runs/lab [--prometheus] [--links]
    pfxha lab up --wan-rtt 0.08 --ca-rtt 0.002 --zk-rtt 0.001   # service, CAs, ZooKeeper away
    pfxha lab status --dir runs/lab
    pfxha lab down --dir runs/lab

``up`` starts a supervisor process (:mod:`chaos.lab.supervisor`) that owns
every server and records their pids in ``<dir>/lab.json``; it returns once
the lab is up (or has failed and cleaned up after itself). ``down`` asks the
supervisor to stop everything and, should it be gone, stops the recorded
processes itself, by pid, after checking each pid still runs what we
started. Logs stay in the run directory.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
from rich.console import Console
from rich.table import Table

from chaos.lab.lab import check_packages
from chaos.lab.state import LabState, alive, read_state, stop_processes, write_state
from chaos.launch._process import LaunchError, port_open
from chaos.launch.links import (
    CA_RTT_OPTION,
    WAN_JITTER_OPTION,
    WAN_RTT_OPTION,
    ZK_RTT_OPTION,
    check_lan,
    check_wan,
)
from chaos.launch.netns import HostNetwork, netns_unavailable

__all__ = ["down", "status", "up"]

_DIR = click.option(
    "--dir",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/lab"),
    show_default=True,
    help="Run directory: state, data and logs.",
)


HOSTS_OPTION = click.option(
    "--hosts/--single-host",
    default=False,
    show_default=True,
    help="--hosts: every connector, ZooKeeper node, the CAs and the service in its own "
    "network namespace on a lab bridge (needs root and iproute2). --single-host: all on "
    "this machine's loopback.",
)

CA_OPTION = click.option(
    "--ca",
    "ca",
    type=click.Choice(["cfssl", "openbao", "mixed"]),
    default="cfssl",
    show_default=True,
    help="The issuing CAs' vendor: cfssl; openbao (each issuing CA on its own 3-node "
    "OpenBao Raft cluster); mixed (primary on CFSSL, secondary on OpenBao). "
    "OpenBao needs the single-host lab.",
)

SINGLE_HOST_LIMITS = (
    "note: single-host topology: every process shares one loopback, so what only holds "
    "there (a liveness socket on 127.0.0.1, files on the same disk) is not exercised; "
    "use --hosts for a lab of separate hosts."
)


def _running_state(run_dir: Path) -> LabState | None:
    try:
        state = read_state(run_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if state is not None and state.status in ("starting", "up") and alive(state.supervisor_pid):
        return state
    return None


@click.command("up")
@click.option("--connectors", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--prometheus", is_flag=True, help="Also start Prometheus with the repo's rules.")
@click.option(
    "--links",
    is_flag=True,
    help="Each connector reaches the service and each CA through its own fault proxy "
    "(ports in endpoints.json; single-host only).",
)
@WAN_RTT_OPTION
@WAN_JITTER_OPTION
@CA_RTT_OPTION
@ZK_RTT_OPTION
@HOSTS_OPTION
@CA_OPTION
@_DIR
@click.option("--timeout", type=float, default=180.0, show_default=True)
def up(
    connectors: int,
    prometheus: bool,
    links: bool,
    wan_rtt: float | None,
    wan_jitter: float,
    ca_rtt: float | None,
    zk_rtt: float | None,
    hosts: bool,
    ca: str,
    run_dir: Path,
    timeout: float,
) -> None:
    """Start ZooKeeper x3, CFSSL CAs, the service and N connectors in the background."""
    run_dir = run_dir.resolve()
    check_wan(wan_rtt, wan_jitter)
    check_lan(ca_rtt=ca_rtt, zk_rtt=zk_rtt)
    links = links or any(x is not None for x in (wan_rtt, ca_rtt, zk_rtt))
    if hosts and (why := netns_unavailable()):
        raise click.ClickException(f"--hosts: {why}; use --single-host")
    if hosts and ca != "cfssl":
        raise click.UsageError(f"--ca {ca}: OpenBao runs on the single-host lab only; drop --hosts")
    if hosts and links:
        raise click.ClickException(
            "--links and --wan-rtt/--ca-rtt/--zk-rtt need the single-host topology: drop --hosts"
        )
    existing = _running_state(run_dir)
    if existing is not None:
        raise click.ClickException(
            f"a lab is already running in {run_dir} (supervisor pid {existing.supervisor_pid}); "
            f"stop it first: pfxha lab down --dir {run_dir}"
        )
    try:
        check_packages(prometheus=prometheus, ca=ca)
    except LaunchError as exc:
        raise click.ClickException(str(exc)) from exc
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "lab.json").unlink(missing_ok=True)
    argv = [sys.executable, "-m", "chaos.lab.supervisor", "--dir", str(run_dir)]
    argv += ["--connectors", str(connectors)] + (["--prometheus"] if prometheus else [])
    argv += ["--hosts"] if hosts else []
    argv += ["--ca", ca]
    argv += ["--links"] if links else []
    if wan_rtt is not None:
        argv += ["--wan-rtt", str(wan_rtt), "--wan-jitter", str(wan_jitter)]
    argv += ["--ca-rtt", str(ca_rtt)] if ca_rtt is not None else []
    argv += ["--zk-rtt", str(zk_rtt)] if zk_rtt is not None else []
    with (run_dir / "lab.log").open("ab") as log:
        supervisor = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this command; `lab down` stops it
            cwd=Path(__file__).resolve().parents[2],
        )
    deadline = time.monotonic() + timeout
    state: LabState | None = None
    while time.monotonic() < deadline:
        state = read_state(run_dir)
        if state is not None and state.status in ("up", "failed"):
            break
        if supervisor.poll() is not None:
            break
        time.sleep(0.2)
    if state is None or state.status != "up":
        if supervisor.poll() is None:
            supervisor.terminate()
            supervisor.wait(timeout=60)
        if state is not None and state.processes:
            stop_processes(state.processes, grace=5)
        HostNetwork.sweep(run_dir)
        reason = state.error if state is not None and state.error else "see the log"
        raise click.ClickException(
            f"the lab did not start: {reason}\n(log: {run_dir / 'lab.log'}; "
            "nothing was left running)"
        )
    click.echo(f"lab up in {run_dir} (supervisor pid {state.supervisor_pid})")
    if not hosts:
        click.echo(SINGLE_HOST_LIMITS)
    _print_status(state)


@click.command("status")
@_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the state file as JSON.")
def status(run_dir: Path, as_json: bool) -> None:
    """Every process, who leads and with which epoch, CA and service health."""
    state = read_state(run_dir.resolve())
    if state is None:
        raise click.ClickException(f"no lab in {run_dir} (start one with pfxha lab up)")
    if as_json:
        click.echo((run_dir.resolve() / "lab.json").read_text())
        return
    _print_status(state)


@click.command("down")
@_DIR
@click.option("--grace", type=float, default=30.0, show_default=True)
def down(run_dir: Path, grace: float) -> None:
    """Stop everything the lab started (by pid); keep data and logs."""
    run_dir = run_dir.resolve()
    state = read_state(run_dir)
    if state is None:
        raise click.ClickException(f"no lab in {run_dir}")
    if alive(state.supervisor_pid):
        import os
        import signal

        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(state.supervisor_pid):
            time.sleep(0.1)
    leftovers = stop_processes(state.processes, grace=5)
    # The supervisor removes its hosts when it stops; if it crashed, its record does.
    if HostNetwork.sweep(run_dir):
        leftovers.append("lab hosts (network namespaces and links)")
    state = read_state(run_dir) or state
    state.status = "down"
    write_state(state, run_dir)
    extra = f" (killed: {', '.join(leftovers)})" if leftovers else ""
    click.echo(f"lab in {run_dir} is down{extra}; logs kept there")


def _leader(endpoints: dict[str, Any]) -> tuple[str, str]:
    hosts = endpoints.get("zookeeper")
    if not hosts:
        return "-", "-"
    try:
        from election import read_cluster_status

        cluster = read_cluster_status(str(hosts), str(endpoints.get("cluster", "lab")))
    except Exception as exc:  # status must still print when ZooKeeper is down
        return f"unknown ({type(exc).__name__})", "-"
    if cluster.leader is None:
        return "nobody", str(cluster.epoch)
    return cluster.leader.name, str(cluster.leader.epoch)


def _trust(verify: str | bool) -> ssl.SSLContext | bool:
    """The lab's service certificate is self-signed: trust exactly it (issue 8)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def _http_ok(url: str, path: str, verify: str | bool = True) -> str:
    try:
        reply = httpx.get(url + path, timeout=1.0, verify=_trust(verify))
    except httpx.HTTPError as exc:
        return f"down ({type(exc).__name__})"
    return "up" if reply.status_code < 500 else f"error {reply.status_code}"


def _active_at_service(state: LabState) -> str:
    url = state.endpoints.get("service")
    if not url:
        return "-"
    token_file = Path(state.run_dir) / "service" / "admin-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        reply = httpx.get(
            f"{url}/api/v1/read/connectors",
            headers=headers,
            timeout=1.0,
            verify=_trust(state.endpoints.get("service_ca") or True),
        )
        rows = reply.raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"unknown ({type(exc).__name__})"
    active = [
        f"{r['name']} (epoch {r['epoch']}, {r['health']})" for r in rows if r["role"] == "active"
    ]
    return ", ".join(active) or "none"


def _print_status(state: LabState) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    console = Console()
    procs = Table(title=f"lab {state.run_dir}: {state.status}")
    for column in ("process", "pid", "state", "log"):
        procs.add_column(column)
    for record in state.processes:
        running = alive(record.pid, record.argv or None)
        procs.add_row(
            record.name,
            str(record.pid),
            "[green]running[/]" if running else "[red]gone[/]",
            record.log,
        )
    console.print(procs)
    endpoints = state.endpoints
    leader, epoch = _leader(endpoints)
    facts = Table(show_header=False)
    facts.add_row("leader (ZooKeeper)", f"{leader}  epoch {epoch}")
    facts.add_row("active (service)", _active_at_service(state))
    for name, url in sorted((endpoints.get("cas") or {}).items()):
        where = urlsplit(url)  # https:// (mutual TLS) or http://
        host, port = where.hostname or "127.0.0.1", where.port or 0
        facts.add_row(f"CA {name}", f"{url}  {'up' if port_open(host, int(port)) else 'down'}")
    if endpoints.get("service"):
        facts.add_row(
            "service",
            f"{endpoints['service']}  "
            f"{_http_ok(endpoints['service'], '/healthz', endpoints.get('service_ca') or True)}",
        )
    for name, url in sorted((endpoints.get("connectors") or {}).items()):
        facts.add_row(f"connector {name}", f"{url}  {_http_ok(url, '/healthz')}")
    if endpoints.get("prometheus"):
        facts.add_row("prometheus", endpoints["prometheus"])
    if state.error:
        facts.add_row("error", state.error)
    console.print(facts)
