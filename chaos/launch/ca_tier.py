"""The lab's issuing CAs by vendor: CFSSL, OpenBao, or mixed (primary CFSSL, secondary OpenBao).

    tier = CaTier(run_dir / "cas", kind="openbao", connectors=["c1", "c2", "c3"])
    tier.start()
    tier.describe("c1")              # {"root", "cas", "templates"} with c1's own credentials
    tier.kill("primary")             # the whole CA down: its CFSSL server, or every node
    tier.start("primary")            #   of its OpenBao cluster; back (unsealed) again
    tier.active_node("primary")      # OpenBao only: its cluster's Raft active node, "bao2"
    tier.kill_node("primary", "bao2")  # kill -9; a standby takes over
    tier.start_node("primary", "bao2")
    tier.sources()                   # how the checkers read each CA (certdb, or listing + OCSP)
    tier.client_spec("c1")           # c1's CFSSL mutual-TLS pair ({} with no CFSSL CA)
    tier.allow("c4"); tier.deny("c2")  # CFSSL: the CN allow-list; OpenBao: the AppRole secret-id
    tier.stop()

``cfssl`` is :class:`~chaos.launch.cfssl.CfsslLab` as it always was (this class
only forwards to it). ``openbao``: each issuing CA on a 3-node Raft cluster of
its own, so "the primary CA is down" means what it means with two CAs
deployed apart (docs/chaos.md, "CA vendors"); the primary's cluster holds the
root mount and signs the secondary's intermediate, so both chain to one root.
``mixed``: the primary on CFSSL (root, certdb, CRL server), the secondary on a
3-node OpenBao cluster whose intermediate the CFSSL root signs: a real
two-vendor failover with one root for the devices.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from chaos.launch._process import LaunchError, wait_for
from chaos.launch.cfssl import CfsslLab
from chaos.launch.netns import Host
from chaos.launch.openbao import AUDITOR, OpenBaoLab
from connector.ca import CertDB, OpenBaoCA
from connector.ca._profiles import STANDARD_PROFILES, CaProfile

__all__ = ["CA_CHOICES", "CaSource", "CaTier", "vendors"]

CA_CHOICES = ("cfssl", "openbao", "mixed")
_ISSUING = ("primary", "secondary")


def vendors(kind: str) -> dict[str, str]:
    """Which vendor serves each issuing CA for ``--ca kind`` (a bad kind names the option)."""
    if kind not in CA_CHOICES:
        raise ValueError(f"--ca: {kind!r} is not one of {', '.join(CA_CHOICES)}")
    if kind == "mixed":
        return {"primary": "cfssl", "secondary": "openbao"}
    return dict.fromkeys(_ISSUING, kind)


@dataclass(frozen=True)
class CaSource:
    """How the checkers read one CA: its certdb (CFSSL) or its API (OpenBao), and its CRL.

    ``api`` (OpenBao) also answers OCSP; the checkers then ask it about every certificate.
    """

    name: str
    crl_url: str
    certdb: CertDB | None = None
    api: OpenBaoCA | None = None


class CaTier:
    def __init__(
        self,
        run_dir: Path,
        *,
        kind: str = "cfssl",
        connectors: Sequence[str] = ("c1",),
        profiles: Mapping[str, CaProfile] | None = None,
        placement: Host | None = None,
        nodes: int = 3,
        clients: Sequence[str] = (),
    ) -> None:
        """``run_dir``: CFSSL lives in ``run_dir`` itself (as before: ``<lab>/cfssl``),
        each OpenBao cluster in ``run_dir/openbao-<ca>``. ``placement`` is CFSSL only.
        ``clients``: the connectors CFSSL's mutual TLS lets through (``CfsslLab``)."""
        self.vendor = vendors(kind)
        self.kind = kind
        if placement is not None and kind != "cfssl":
            raise LaunchError(
                f"--ca {kind}: OpenBao runs on the single-host lab only for now; "
                "use --single-host or --ca cfssl"
            )
        self.run_dir = Path(run_dir).resolve()
        self.profiles = dict(profiles if profiles is not None else STANDARD_PROFILES)
        self.names = _ISSUING
        on_cfssl = tuple(n for n in self.names if self.vendor[n] == "cfssl")
        self.cfssl = (
            CfsslLab(
                self.run_dir,
                names=on_cfssl,
                profiles=self.profiles,
                placement=placement,
                clients=clients,
            )
            if on_cfssl
            else None
        )
        self.clusters: dict[str, OpenBaoLab] = {}
        self._root_ready = threading.Event()  # clusters start together; signing waits
        for name in (n for n in self.names if self.vendor[n] == "openbao"):
            self.clusters[name] = OpenBaoLab(
                self.run_dir.parent / f"openbao-{name}",
                nodes=nodes,
                connectors=connectors,
                issuing=(name,),
                profiles=self.profiles,
                root=None if not self.clusters and self.cfssl is None else self._root_signer(),
            )
        self._sources: dict[str, CaSource] = {}

    def _root_signer(self) -> tuple[Path, Callable[[str], str]]:
        """The root every issuing CA chains to: CFSSL's, else the first OpenBao cluster's."""
        if self.cfssl is not None:
            return self.cfssl.root_certificate_path, self.cfssl.sign_intermediate
        first = next(iter(self.clusters.values()))

        def sign(csr: str) -> str:
            if not self._root_ready.wait(timeout=180):
                raise LaunchError("the root's OpenBao cluster did not come up within 180 s")
            return first.sign_intermediate(csr)

        return first.root_certificate_path, sign

    # -- lifecycle ----------------------------------------------------------------------

    def _vendor_of(self, name: str) -> CfsslLab | OpenBaoLab:
        if name in self.clusters:
            return self.clusters[name]
        if self.cfssl is None or name not in self.names:
            raise KeyError(f"unknown CA {name!r}; the lab has {', '.join(self.names)}")
        return self.cfssl

    def start(self, name: str | None = None) -> None:
        """Every CA (the root's first), or one CA again after :meth:`kill`."""
        if name is not None:
            vendor = self._vendor_of(name)
            vendor.start(name if isinstance(vendor, CfsslLab) else None)
            return
        if self.cfssl is not None:
            self.cfssl.start()
        self._root_ready.clear()

        def bring_up(cluster: OpenBaoLab) -> None:
            try:
                cluster.start()
                cluster.add_auditor()
            finally:
                self._root_ready.set()  # a failed root fails its dependants at once

        # Raft clusters take ~20 s each to form: in parallel; the one that needs the
        # root's signature waits for it inside its provisioning.
        with cf.ThreadPoolExecutor(max(1, len(self.clusters))) as pool:
            for done in [pool.submit(bring_up, c) for c in self.clusters.values()]:
                done.result()

    def stop(self, name: str | None = None) -> None:
        if name is not None:
            vendor = self._vendor_of(name)
            vendor.stop(name if isinstance(vendor, CfsslLab) else None)
            return
        for source in self._sources.values():
            if source.api is not None:
                source.api.close()
        self._sources.clear()
        for cluster in self.clusters.values():
            cluster.stop()
        if self.cfssl is not None:
            self.cfssl.stop()

    def destroy(self) -> None:
        self.stop()
        if self.cfssl is not None:
            self.cfssl.destroy()

    def _servers(self, name: str) -> tuple[CfsslLab | OpenBaoLab, list[str]]:
        """CA ``name``'s vendor lab and the processes to signal, as that lab names them:
        the CFSSL server, or every running node of its OpenBao cluster."""
        vendor = self._vendor_of(name)
        if isinstance(vendor, CfsslLab):
            return vendor, [name]
        return vendor, [node for node in vendor.nodes if vendor.running(node)]

    def kill(self, name: str) -> None:
        """SIGKILL CA ``name``: its CFSSL server, or every node of its OpenBao cluster."""
        vendor, servers = self._servers(name)
        for server in servers:
            vendor.kill(server)

    def pause(self, name: str) -> None:
        """SIGSTOP CA ``name`` (every node of an OpenBao cluster): a hung CA.

        Its sockets stay open: requests already sent wait in its buffers, and it
        acts on them at :meth:`resume` though their callers gave up (a late
        certificate).
        """
        vendor, servers = self._servers(name)
        for server in servers:
            vendor.pause(server)

    def resume(self, name: str) -> None:
        """SIGCONT CA ``name`` after :meth:`pause`."""
        vendor, servers = self._servers(name)
        for server in servers:
            vendor.resume(server)

    def _cluster(self, name: str) -> OpenBaoLab:
        cluster = self.clusters.get(name)
        if cluster is None:
            raise LaunchError(f"CA {name} is not on OpenBao: it has no Raft nodes (--ca openbao)")
        return cluster

    def active_node(self, name: str) -> str:
        """The Raft active node of CA ``name``'s cluster (OpenBao only)."""
        active = self._cluster(name).active_node()
        if active is None:
            raise LaunchError(f"CA {name}: its OpenBao cluster has no active node")
        return active

    def kill_node(self, name: str, node: str) -> None:
        self._cluster(name).kill(node)

    def start_node(self, name: str, node: str) -> None:
        self._cluster(name).start(node)

    def pause_node(self, name: str, node: str) -> None:
        """SIGSTOP one node of CA ``name``'s cluster: it hangs, its sockets open."""
        self._cluster(name).pause(node)

    def resume_node(self, name: str, node: str) -> None:
        self._cluster(name).resume(node)

    def running(self, name: str) -> bool:
        vendor = self._vendor_of(name)
        if isinstance(vendor, CfsslLab):
            return vendor.running(name)
        return all(vendor.running(node) for node in vendor.nodes)

    def pids(self) -> dict[str, int]:
        """Every running process by name (``cfssl-<ca>``, ``postgres``, ``bao-<ca>-<node>``)."""
        found = dict(self.cfssl.pids()) if self.cfssl is not None else {}
        for name, cluster in self.clusters.items():
            found.update({f"bao-{name}-{n}": pid for n, pid in cluster.pids().items()})
        return found

    def log_path(self, process: str) -> Path:
        """The log file of a process named as :meth:`pids` names it."""
        if process.startswith("bao-"):
            _, ca, node = process.split("-", 2)
            return self.clusters[ca].run_dir / "logs" / f"{node}.log"
        return self.run_dir / "logs" / f"{process}.log"

    # -- who may reach the CAs -----------------------------------------------------------

    def client_spec(self, client: str) -> dict[str, str]:
        """``client``'s mutual-TLS settings for the CFSSL CAs (``{}`` when none is on CFSSL).

        Only CFSSL entries take them (:class:`~chaos.launch.connector.ConnectorFleet`
        adds them next to the auth key): OpenBao is reached with the AppRole alone.
        """
        return self.cfssl.client_spec(client) if self.cfssl is not None else {}

    def allow(self, client: str) -> None:
        """Let ``client`` reach every CA: CFSSL's allow-list, a fresh AppRole secret-id."""
        if self.cfssl is not None:
            self.cfssl.allow(client)
        for cluster in self.clusters.values():
            cluster.add_connector(client)

    def deny(self, client: str) -> None:
        """Take ``client``'s access to every CA away (its secret-id and tokens on OpenBao)."""
        if self.cfssl is not None:
            self.cfssl.deny(client)
        for cluster in self.clusters.values():
            cluster.remove_connector(client)

    # -- facts ----------------------------------------------------------------------------

    @property
    def root_certificate_path(self) -> Path:
        if self.cfssl is not None:
            return self.cfssl.root_certificate_path
        return self.clusters[self.names[0]].root_certificate_path

    @property
    def root_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.root_certificate_path.read_bytes())

    def ca_certificate(self, name: str) -> x509.Certificate:
        return self._vendor_of(name).ca_certificate(name)

    def url(self, name: str) -> str:
        vendor = self._vendor_of(name)
        if isinstance(vendor, CfsslLab):
            return vendor.url(name)
        return str(vendor.ca_spec(name)["url"])

    def crl_url(self, name: str) -> str:
        """CA ``name``'s CRL: on OpenBao, at its cluster's active node when there is one
        (a node that hung while active may serve an old one: docs/pki.md)."""
        vendor = self._vendor_of(name)
        if isinstance(vendor, CfsslLab):
            return vendor.crl_url(name)
        return _openbao_crl(vendor, name, self._serving_url(vendor, name))

    @staticmethod
    def _serving_url(cluster: OpenBaoLab, name: str, timeout: float = 30.0) -> str:
        """The address of CA ``name``'s active node, waited for while its cluster elects."""
        found: list[str] = []

        def serving() -> bool:
            active = cluster.active_node()
            if active is not None:
                found.append(cluster.nodes[active].url)
            return active is not None

        wait_for(serving, timeout=timeout, what=f"CA {name}: an active OpenBao node")
        return found[-1]

    def certdb(self, name: str) -> CertDB:
        vendor = self._vendor_of(name)
        if not isinstance(vendor, CfsslLab):
            raise LaunchError(f"CA {name} is on OpenBao: it has no certdb (see sources())")
        return vendor.certdb(name)

    def describe(self, connector: str | None = None) -> dict[str, Any]:
        """The issuing CAs as ``connector``'s configuration lists them (its own AppRoles).

        CFSSL entries carry ``auth_key`` (the launcher writes it to a 0600 file);
        OpenBao entries name the connector's role_id and secret_id files.
        """
        cas: dict[str, Any] = {}
        if self.cfssl is not None:
            cas.update(self.cfssl.describe()["cas"])
        for name, cluster in self.clusters.items():
            cas[name] = cluster.ca_spec(name, connector)
        return {
            "root": str(self.root_certificate_path),
            "cas": {name: cas[name] for name in self.names},
            "templates": {profile: list(self.names) for profile in self.profiles},
        }

    def sources(self) -> dict[str, CaSource]:
        """How the checkers read each CA: CFSSL through its certdb; OpenBao through the
        read-only auditor AppRole at its cluster's Raft leader alone, as it is now (a node
        that hung while active may answer as active from an old state: docs/pki.md)."""
        for name in self.names:
            vendor = self._vendor_of(name)
            if isinstance(vendor, CfsslLab):
                if name not in self._sources:
                    certdb = vendor.certdb(name)
                    self._sources[name] = CaSource(name, vendor.crl_url(name), certdb=certdb)
                continue
            serving = self._serving_url(vendor, name)
            old = self._sources.get(name)
            if old is not None and old.api is not None:
                if old.api.urls == (serving,):
                    continue  # the same node still serves: keep its client (and token)
                old.api.close()
            spec = {**vendor.ca_spec(name, AUDITOR), "url": serving, "cluster_urls": None}
            api = OpenBaoCA.from_dict(spec, timeout=10.0)
            self._sources[name] = CaSource(name, _openbao_crl(vendor, name, serving), api=api)
        return dict(self._sources)


def _openbao_crl(cluster: OpenBaoLab, name: str, serving: str) -> str:
    """CA ``name``'s CRL at ``serving``, one of its cluster's node addresses."""
    return f"{serving}/v1/{cluster.mount(name)}/crl"
