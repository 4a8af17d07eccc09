"""``pfxha zk-exporter``: ZooKeeper's ``mntr`` as Prometheus metrics, read at scrape time.

    pfxha zk-exporter --hosts zk1:2181,zk2:2181,zk3:2181 --listen 0.0.0.0:9141

Runs until SIGTERM or SIGINT. One exporter per ensemble is enough (it asks every
server); the scrape job is ``pfxha-zookeeper`` in deploy/prometheus/prometheus.yml,
the unit deploy/systemd/pfxha-zk-exporter.service. What it exports:
:mod:`connector.zk_exporter`.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
from prometheus_client import CollectorRegistry

from connector.zk_exporter import ZkExporterError, ZooKeeperCollector, parse_servers, serve

__all__ = ["zk_exporter"]


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return host.strip("[]") or "0.0.0.0", int(port)


@click.command("zk-exporter")
@click.option(
    "--hosts",
    envvar="PFXHA_ZOOKEEPER_HOSTS",
    required=True,
    help="The ZooKeeper servers, as in a connect string: zk1:2181,zk2:2181,zk3:2181.",
)
@click.option(
    "--listen",
    default="127.0.0.1:9141",
    show_default=True,
    help="HOST:PORT to serve /metrics on.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=30),
    default=1.0,
    show_default=True,
    help="Seconds each server has to answer mntr during a scrape (keep it under the "
    "scrape timeout, 4 s in deploy/).",
)
def zk_exporter(hosts: str, listen: str, timeout: float) -> None:
    """Serve each ZooKeeper server's health (from mntr) as Prometheus metrics."""
    try:
        servers = parse_servers(hosts)
    except ZkExporterError as exc:
        raise click.BadParameter(str(exc), param_hint="--hosts") from None
    host, port = _listen(listen)
    collector = ZooKeeperCollector(servers, timeout=timeout)
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        exporter = serve(registry, host, port, collector=collector)
    except OSError as exc:
        collector.close()
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    click.echo(
        f"serving ZooKeeper metrics of {len(servers)} server(s) on "
        f"http://{host}:{exporter.port}/metrics",
        err=True,
    )
    try:
        stop.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        exporter.close()
