"""Per-connector links: a :class:`FaultProxy` between each connector and each thing it calls.

    links = ConnectorLinks(["c1", "c2", "c3"], {
        "service": "https://127.0.0.1:8443",
        "ca:primary": "http://127.0.0.1:8888",
        "ca:primary:certdb": "postgresql://pfxha_reader@127.0.0.1:5432/certdb_primary",
    })
    links.start()                              # one proxy per (connector, target), loopback
    links.url("c1", "service")                 # https://127.0.0.1:PORT: what c1's config names
    links.select("c2", "ca:*")                 # {"ca:primary": proxy, "ca:primary:certdb": proxy}
    links.endpoints("c1")                      # ConnectorEndpoints for ConnectorFleet
    links.ports()                              # {"c1": {"service": PORT, ...}} (endpoints.json)
    links.set_all("service", wan(0.08, 0.01))  # the service 80 ms (± 10 ms) away from everyone
    links.set_all("ca:*", lan(0.002, "--ca-rtt"))  # the CA hosts 2 ms away on the LAN
    links.stop()

A target is ``service`` or ``ca:<name>`` (the CA's API) or ``ca:<name>:certdb``
(its certdb's PostgreSQL) or ``ca:<name>:node<i>`` (node ``i`` >= 2 of an
OpenBao cluster, its ``cluster_urls`` in order: :func:`node_targets`) or
``zk:<i>`` (ZooKeeper node ``i``, ``zk://HOST:PORT``;
the connector's ``hosts`` then names its links), so the pattern ``ca:*`` is
"every CA host", ``ca:primary*`` "the primary CA host" and ``zk:*`` "the
ensemble" (:func:`fnmatch.fnmatchcase`). Only the
host and port of each URL change; scheme, credentials, path and query stay,
so TLS to ``127.0.0.1`` still verifies. The proxies are threads of the process
that calls :meth:`start` (the drill, or the ``pfxha lab up`` supervisor) and
die with it; they bind loopback only, so the single-host lab alone uses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from chaos.launch.connector import ConnectorEndpoints
from chaos.launch.proxy import FaultProxy, LinkFaults, ProxyStats, Toxics

__all__ = [
    "CA_RTT_OPTION",
    "WAN_JITTER_OPTION",
    "WAN_RTT_OPTION",
    "ZK_RTT_OPTION",
    "ConnectorLinks",
    "LinkBook",
    "LinkHandle",
    "ca_target",
    "certdb_target",
    "check_lan",
    "check_wan",
    "lan",
    "node_targets",
    "proxied_url",
    "upstream_of",
    "wan",
    "zk_targets",
]

SERVICE = "service"


def ca_target(ca: str) -> str:
    return f"ca:{ca}"


def certdb_target(ca: str) -> str:
    return f"ca:{ca}:certdb"


def node_targets(ca: str, cluster_urls: str | None) -> dict[str, str]:
    """The links to a CA cluster's other nodes (``cluster_urls``, comma-separated), in order:
    ``ca:<ca>:node2``, ``ca:<ca>:node3``, ... (``ca:<ca>`` is the first node, ``url``)."""
    urls = [u.strip() for u in (cluster_urls or "").split(",") if u.strip()]
    return {f"{ca_target(ca)}:node{i}": url for i, url in enumerate(urls, start=2)}


def zk_targets(hosts: str) -> dict[str, str]:
    """``zk:0``, ``zk:1``, ... for a ZooKeeper connection string ``HOST:PORT,HOST:PORT``."""
    return {f"zk:{i}": f"zk://{address}" for i, address in enumerate(hosts.split(","))}


def lan(rtt_s: float, option: str) -> LinkFaults:
    """A LAN link's round trip ``rtt_s``, half each way; errors name ``option``."""
    if not rtt_s >= 0:
        raise ValueError(f"{option} must be 0 or more seconds, got {rtt_s}")
    one_way = Toxics(latency_s=rtt_s / 2)
    return LinkFaults(up=one_way, down=one_way)


def wan(rtt_s: float, jitter_s: float = 0.0) -> LinkFaults:
    """A round trip of ``rtt_s`` ± ``jitter_s``: half of each on each direction.

    Errors name the command-line settings (``--wan-rtt``, ``--wan-jitter``).
    """
    if rtt_s < 0:
        raise ValueError(f"--wan-rtt must be 0 or more seconds, got {rtt_s}")
    if not 0 <= jitter_s <= rtt_s:
        raise ValueError(f"--wan-jitter must be between 0 and --wan-rtt ({rtt_s}), got {jitter_s}")
    one_way = Toxics(latency_s=rtt_s / 2, jitter_s=jitter_s / 2)
    return LinkFaults(up=one_way, down=one_way)


WAN_RTT_OPTION = click.option(
    "--wan-rtt",
    type=float,
    default=None,
    help="Put the service across a WAN: this round trip (seconds) on every connector's "
    "service link, half each way (runs on the links; single-host only).",
)
WAN_JITTER_OPTION = click.option(
    "--wan-jitter",
    type=float,
    default=0.0,
    show_default=True,
    help="± this much (seconds, uniform) on the --wan-rtt round trip.",
)


CA_RTT_OPTION = click.option(
    "--ca-rtt",
    type=float,
    default=None,
    help="The CA hosts on a LAN: this round trip (seconds) on every connector's links to "
    "each CA's API and certdb, half each way (runs on the links; single-host only).",
)
ZK_RTT_OPTION = click.option(
    "--zk-rtt",
    type=float,
    default=None,
    help="ZooKeeper on a LAN: each connector reaches every ZooKeeper node through its own "
    "link with this round trip (seconds), half each way (single-host only).",
)


def check_lan(**rtts: float | None) -> None:
    """Refuse a bad ``--ca-rtt`` / ``--zk-rtt`` (keyword: the option's name) before starting."""
    for name, rtt_s in rtts.items():
        if rtt_s is None:
            continue
        try:
            lan(rtt_s, "--" + name.replace("_", "-"))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc


def check_wan(rtt_s: float | None, jitter_s: float) -> None:
    """Refuse bad ``--wan-rtt`` / ``--wan-jitter`` values before anything starts."""
    if rtt_s is None:
        if jitter_s:
            raise click.UsageError("--wan-jitter needs --wan-rtt")
        return
    try:
        wan(rtt_s, jitter_s)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def upstream_of(url: str) -> tuple[str, int]:
    """``(host, port)`` a URL or DSN points at; the port must be explicit."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r} names no host and port to proxy")
    return parts.hostname, parts.port


def proxied_url(url: str, address: tuple[str, int]) -> str:
    """``url`` with its host and port replaced by ``address`` (credentials kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{address[0]}:{address[1]}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc}" if userinfo else netloc))


class LinkHandle(Protocol):
    """One link as the nemesis sees it: where it listens and its faults."""

    listen_host: str
    port: int

    @property
    def faults(self) -> LinkFaults: ...

    def set(self, faults: LinkFaults) -> None: ...


H = TypeVar("H", bound=LinkHandle)


class LinkBook(Generic[H]):
    """Lookups over ``proxies[connector][target]``, wherever the proxies run."""

    targets: dict[str, str]
    proxies: dict[str, dict[str, H]]

    def proxy(self, connector: str, target: str) -> H:
        try:
            return self.proxies[connector][target]
        except KeyError:
            names = [f"{c}->{t}" for c, each in self.proxies.items() for t in each]
            raise KeyError(f"no link {connector} -> {target}; links: {', '.join(names)}") from None

    def select(self, connector: str, pattern: str) -> dict[str, H]:
        """The links of ``connector`` whose target matches ``pattern``; none is an error."""
        if connector not in self.proxies:
            raise KeyError(f"no links for connector {connector!r} ({', '.join(self.proxies)})")
        found = {t: p for t, p in self.proxies[connector].items() if fnmatchcase(t, pattern)}
        if not found:
            known = ", ".join(self.targets)
            raise KeyError(f"no link of {connector} matches {pattern!r} ({known})")
        return found

    def url(self, connector: str, target: str) -> str:
        proxy = self.proxy(connector, target)
        return proxied_url(self.targets[target], (proxy.listen_host, proxy.port))

    def endpoints(self, connector: str) -> ConnectorEndpoints:
        """What ``connector``'s config must name so every call goes through its links."""
        cas: dict[str, dict[str, str]] = {}
        nodes: dict[str, list[tuple[int, str]]] = {}
        zk: list[str] = []
        for target in self.targets:
            kind, _, rest = target.partition(":")
            if kind == "zk":
                proxy = self.proxy(connector, target)
                zk.append(f"{proxy.listen_host}:{proxy.port}")
            if kind != "ca":
                continue
            ca, _, sub = rest.partition(":")
            if sub.startswith("node"):
                nodes.setdefault(ca, []).append((int(sub[4:]), self.url(connector, target)))
                continue
            key = "certdb_dsn" if sub == "certdb" else "url"
            cas.setdefault(ca, {})[key] = self.url(connector, target)
        for ca, numbered in nodes.items():
            cas.setdefault(ca, {})["cluster_urls"] = ",".join(u for _, u in sorted(numbered))
        service = self.url(connector, SERVICE) if SERVICE in self.targets else None
        return ConnectorEndpoints(service_url=service, cas=cas, zk_hosts=",".join(zk) or None)

    def set_all(self, pattern: str, faults: LinkFaults) -> None:
        """Every connector's links matching ``pattern`` get ``faults`` (what a cut heals to)."""
        for connector in self.proxies:
            for proxy in self.select(connector, pattern).values():
                proxy.set(faults)

    def ports(self) -> dict[str, dict[str, int]]:
        return {c: {t: p.port for t, p in proxies.items()} for c, proxies in self.proxies.items()}


class ConnectorLinks(LinkBook[FaultProxy]):
    """One proxy per connector and target, each with its own faults, in this process."""

    def __init__(self, connectors: Sequence[str], targets: Mapping[str, str]) -> None:
        if not targets:
            raise ValueError("links need at least one target")
        self.targets = dict(targets)
        self.upstreams = {name: upstream_of(url) for name, url in self.targets.items()}
        self.proxies = {
            connector: {t: FaultProxy(self.upstreams[t]) for t in self.targets}
            for connector in connectors
        }

    def start(self) -> None:
        try:
            for proxies in self.proxies.values():
                for proxy in proxies.values():
                    proxy.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proxies in self.proxies.values():
            for proxy in proxies.values():
                proxy.stop()

    def __enter__(self) -> ConnectorLinks:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def thread_cpu_s(self) -> float:
        """CPU seconds the proxies' threads have used so far (Linux ``/proc``)."""
        return sum(p.cpu_s() for proxies in self.proxies.values() for p in proxies.values())

    def stats(self) -> ProxyStats:
        """Everything every link forwarded and dropped, summed."""
        total = ProxyStats()
        for proxies in self.proxies.values():
            for proxy in proxies.values():
                total.connections += proxy.stats.connections
                total.resets += proxy.stats.resets
                total.forwarded_bytes += proxy.stats.forwarded_bytes
                total.held_bytes += proxy.stats.held_bytes
                total.discarded_bytes += proxy.stats.discarded_bytes
        return total
