"""What the drill and the nemesis do to a running :class:`~chaos.lab.lab.Lab`, and read from it.

    lab.kill_connector("c2"); lab.start_connector("c2")
    lab.kill_zk_node(lab.zk_leader_index())
    fault = lab.link_cut("c2", ("ca:*",), "blackhole")   # a Fault (a lab with links)
    fault = lab.host_fault("crash", "c1")                 # a Fault (hosts topology)
    lab.leader_now()                 # ("c1", 7) through one long-lived client: cheap to poll
    lab.revoke_member("c3")          # at the service, in ZooKeeper, at the CAs
    lab.wait_whole(timeout=60)       # every process up, ZooKeeper synced, all joined

The drill's scenarios reach a lab only through these methods (its
``FaultTarget``); each acts on a part that a launcher started, by pid, by a
ZooKeeper write as the admin identity, or through a connector's own fault
proxies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kazoo.exceptions import NoNodeError

from chaos.checkers.model import CaCertificate, Snapshot
from chaos.checkers.state import ServiceDb, api_certificates, ca_certificates, read_snapshot
from chaos.lab._lab_base import LabBase
from chaos.launch._process import LaunchError, wait_for
from chaos.launch.proxy import LinkFaults
from chaos.nemesis import Fault
from chaos.nemesis.host import HostCrash, HostIsolation, HostPartition
from chaos.nemesis.link import CutMode, LinkCut, LinkSlow
from election import (
    ClusterPaths,
    grant_member,
    open_client,
    read_cluster_status,
    request_switchover,
    revoke_member,
)

__all__ = ["LabControls", "LeaderInfo"]


@dataclass(frozen=True)
class LeaderInfo:
    """``/pfxha/<cluster>/leader`` as ZooKeeper holds it (None fields: nobody leads)."""

    name: str | None
    epoch: int | None
    since: float | None = None


class LabControls(LabBase):
    """The levers and readings of a running lab (see :class:`chaos.lab.lab.Lab`)."""

    primary_ca = "primary"
    secondary_ca = "secondary"

    def connector_names(self) -> list[str]:
        return list(self._fleet().names)

    def connector_pid(self, name: str) -> int | None:
        return self._fleet().pid(name)

    def dump_stacks(self, name: str, timeout: float = 60.0) -> Path | None:
        """Python stacks of every thread of connector ``name`` (via gdb), for a post-mortem.

        Returns the file written under the connector's directory, or None when
        gdb is missing or the process is gone.
        """
        pid = self.connector_pid(name)
        gdb = shutil.which("gdb")
        if pid is None or gdb is None:
            return None
        python = Path(os.path.realpath(sys.executable))
        helper = python.with_name(python.name + "-gdb.py")
        out = self.run_dir / "connectors" / name / f"stacks-{pid}-{int(time.time())}.txt"
        argv = [gdb, "-p", str(pid), "-batch"]
        if helper.exists():
            argv += ["-iex", f"add-auto-load-safe-path {helper}"]
        argv += ["-ex", "thread apply all py-bt", "-ex", "thread apply all bt 8"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        out.write_text(result.stdout + result.stderr)
        return out

    def kill_connector(self, name: str) -> None:
        self._fleet().kill(name)

    def terminate_connector(self, name: str) -> None:
        self._fleet().stop(name, grace=10.0)

    def pause_connector(self, name: str) -> None:
        self._fleet().pause(name)

    def resume_connector(self, name: str) -> None:
        self._fleet().resume(name)

    def start_connector(self, name: str) -> None:
        self._fleet().start(name, wait=True)

    def kill_ca(self, name: str) -> None:
        self.cas.kill(name)

    def start_ca(self, name: str) -> None:
        self.cas.start(name)

    def pause_ca(self, name: str) -> None:
        """SIGSTOP CA ``name``: it keeps what was sent to it and acts on it at resume."""
        self.cas.pause(name)

    def resume_ca(self, name: str) -> None:
        self.cas.resume(name)

    def keys_in_doubt(self, since_unix: float, until_unix: float) -> dict[str, str]:
        """Key -> request of the intents in the window that a CA may still sign late
        (see :meth:`ServiceDb.keys_in_doubt`)."""
        return self.service_db().keys_in_doubt(since_unix, until_unix)

    def ca_certificates(self) -> list[CaCertificate]:
        """Every certificate each CA recorded (its certdb, or its API for OpenBao)."""
        sources = self.cas.sources().values()
        listed = ca_certificates({s.name: s.certdb for s in sources if s.certdb is not None})
        for source in sources:
            if source.api is not None:
                listed += [record for record, _ in api_certificates(source.name, source.api)]
        return listed

    def ca_active_node(self, name: str) -> str:
        """The Raft active node of CA ``name``'s OpenBao cluster (LaunchError: none)."""
        return self.cas.active_node(name)

    def kill_ca_node(self, name: str, node: str) -> None:
        """kill -9 of one node of CA ``name``'s OpenBao cluster."""
        self.cas.kill_node(name, node)

    def start_ca_node(self, name: str, node: str) -> None:
        self.cas.start_node(name, node)

    def pause_ca_node(self, name: str, node: str) -> None:
        """SIGSTOP one node of CA ``name``'s OpenBao cluster (a hung node)."""
        self.cas.pause_node(name, node)

    def resume_ca_node(self, name: str, node: str) -> None:
        self.cas.resume_node(name, node)

    def zk_leader_index(self) -> int | None:
        return self.zk.leader_index()

    def key_pools_full(self, connectors: list[str]) -> bool:
        """Whether each of ``connectors`` has its key pool full (see
        :meth:`ConnectorFleet.key_pool_full`); a connector that does not answer is not."""
        fleet = self._fleet()
        return all(fleet.key_pool_full(name) for name in connectors)

    def placed(self, connector: str) -> bool:
        """Whether ``connector`` may lead where it is: on hosts, its host must not carry
        the ZooKeeper quorum leader (the connectors' placement moves the lease off it,
        2 s into a term in the lab). Always true on a single host.
        """
        if self.network is None or connector not in self.host_of:
            return True
        index = self.zk.leader_index()
        if index is None:
            return False
        return self.host_of.get(f"zk{index + 1}") is not self.host_of[connector]

    def kill_zk_node(self, index: int) -> None:
        self.zk.kill_node(index)

    def start_zk_nodes(self, indices: list[int]) -> None:
        # Start all first: one restarted node alone cannot serve without quorum.
        for index in indices:
            self.zk.start_node(index, wait=False)
        self.zk.wait_serving(indices)

    def zk_client_ports(self) -> list[int]:
        """Where connectors reach ZooKeeper: its nodes, and their links with ``zk_rtt``."""
        own = self.links.ports() if self.links is not None else {}
        linked = [port for ports in own.values() for t, port in ports.items() if t[:3] == "zk:"]
        return [*self.zk.client_ports, *linked]

    def host_fault(self, kind: str, connector: str) -> Fault:
        """A fault of connector ``connector``'s whole host (hosts topology only).

        ``crash``: every process of the host frozen and its link dropped;
        ``isolate``: its link dropped; ``partition``: its packets to and from the
        other ZooKeeper nodes' hosts dropped (service and CAs still reachable).
        """
        host = self.host_of.get(connector)
        if self.network is None or host is None:
            raise LaunchError(f"host faults need the hosts topology (lab of {self.topology})")
        if kind == "crash":
            return HostCrash(self.network, host)
        if kind == "isolate":
            return HostIsolation(self.network, host)
        if kind == "partition":
            peers = sorted({self.host_of[f"zk{i}"].address for i in (1, 2, 3)} - {host.address})
            return HostPartition(host, peers, name=f"partition host of {connector} from ZooKeeper")
        raise ValueError(f"unknown host fault {kind!r}")

    def link_cut(self, connector: str, targets: tuple[str, ...], mode: CutMode) -> Fault:
        """Cut ``connector``'s links to ``targets`` (``service``, ``ca:*``, ...); needs links."""
        if self.links is None:
            raise LaunchError(
                "link faults need the per-connector links: start the lab with links "
                "(pfxha drill --links, pfxha lab up --links)"
            )
        return LinkCut(self.links, connector, targets, mode)

    def link_slow(self, connector: str, targets: tuple[str, ...], rtt_s: float) -> Fault:
        """``rtt_s`` more round trip on ``connector``'s links to ``targets``; needs links."""
        if self.links is None:
            raise RuntimeError("latency spikes need the per-connector links (--links)")
        return LinkSlow(self.links, connector, targets, rtt_s=rtt_s)

    def add_connector(self, name: str) -> None:
        """One more connector with its own identities (CA access, ZooKeeper, enrollment)."""
        if not self.secure or self.zk_auth is None:
            raise LaunchError("adding a connector needs a secure lab (Lab(secure=True))")
        self.cas.allow(name)
        _, password_file = self.zk_member_auth(name)
        with open_client(self.zk.hosts, auth_digest=self.zk_auth) as client:
            grant_member(
                client, ClusterPaths(self.cluster), name, password_file.read_text().strip()
            )
        fleet = self._fleet()
        fleet.add(name)
        fleet.start(name)

    def remove_connector(self, name: str) -> None:
        """Stop a connector :meth:`add_connector` added and forget it (after revoking it)."""
        self._fleet().remove(name)

    def revoke_member(
        self, name: str, reason: str = "revoked", *, ca: bool = True
    ) -> dict[str, Any]:
        """Revoke connector ``name`` everywhere: at the service, in ZooKeeper, at the CAs.

        The service refuses it (403) and its agent leaves the election; its
        ZooKeeper identity leaves every ACL and its nodes are deleted (a leader
        loses the lease at once); its CA client certificate's CN leaves every
        CA's allow-list (a rolling restart of the CAs).
        """
        # Both sessions first: ``revoked_at`` is the first revoking act (monotonic).
        with (
            self._service().admin_client() as admin,
            open_client(self.zk.hosts, auth_digest=self.zk_auth) as client,
        ):
            revoked_at = time.monotonic()
            admin.post(
                f"/api/v1/admin/connectors/{name}/revoke", json={"reason": reason}
            ).raise_for_status()
            report = revoke_member(client, ClusterPaths(self.cluster), name)
        if ca:  # ca=False: the caller denies CA access itself (cas.deny), e.g. timed apart
            self.cas.deny(name)
        return {
            "revoked_at": revoked_at,
            "zookeeper_acl_paths": report.acl_paths,
            "zookeeper_deleted": report.deleted,
        }

    def heal_links(self) -> None:
        """Every link back to its baseline: no fault, or the WAN's and LANs' latency."""
        if self.links is None:
            return
        self.links.set_all("*", LinkFaults())
        self._links_baseline()

    def switchover(self, to: str | None = None) -> None:
        with open_client(self.zk.hosts, auth_digest=self.zk_auth) as client:
            request_switchover(client, self.cluster, to=to, auth_digest=self.zk_auth)

    def leader_now(self) -> tuple[str | None, int | None]:
        """``(name, epoch)`` of ``/leader`` through one long-lived client: cheap to poll."""
        if self._reader is None:
            stack = contextlib.ExitStack()
            self._stops.append(("zookeeper reader", stack.close))
            self._reader = stack.enter_context(open_client(self.zk.hosts))
        try:
            raw, _ = self._reader.get(f"/pfxha/{self.cluster}/leader")
            value = json.loads(raw)
            return str(value["name"]), int(value["epoch"])
        except NoNodeError:
            return None, None
        except (ValueError, TypeError, KeyError):  # garbled or half-written: nobody proven
            return None, None

    def leader(self) -> LeaderInfo:
        status = read_cluster_status(self.zk.hosts, self.cluster)
        if status.leader is None:
            return LeaderInfo(None, None)
        return LeaderInfo(status.leader.name, status.leader.epoch)

    def connector_members(self) -> list[str]:
        status = read_cluster_status(self.zk.hosts, self.cluster)
        return sorted(m.name for m in status.members)

    def members_out_of_line(self) -> set[str]:
        """Members not in the election's line (one read): no crash or hand-over can go to
        them. The leader may be one; a standby is while it withholds itself (its
        hold-down after a yield, or a dependency it cannot reach)."""
        status = read_cluster_status(self.zk.hosts, self.cluster)
        return {m.name for m in status.members} - {c.name for c in status.line}

    def service_db(self) -> ServiceDb:
        return ServiceDb(self._service().db_path)

    def snapshot(self) -> Snapshot:
        sources = self.cas.sources().values()
        return read_snapshot(
            self.service_db(),
            certdbs={s.name: s.certdb for s in sources if s.certdb is not None},
            crl_urls={s.name: s.crl_url for s in sources},
            apis={s.name: s.api for s in sources if s.api is not None},
        )

    def wait_whole(self, timeout: float) -> None:
        """Until every process runs, every ZooKeeper node serves (a node that was cut
        off serves again only once it has re-synced with the quorum leader) and every
        connector is an election member again.

        Without the ZooKeeper check a drill round could start while the node cut in the
        round before was still syncing: the quorum leader then had one synced follower,
        and a fault on that follower's host took the quorum (hosts drill, partition
        rounds of 7.7 and 13.1 s, "Not sufficient followers synced" in the leader's log).
        """
        fleet = self._fleet()
        expected = sorted(fleet.names)

        def whole() -> bool:
            if not all(fleet.running(n) for n in fleet.names):
                return False
            if not all(self.cas.running(n) for n in self.cas.names):
                return False
            if any(not self.zk.node(i).running() for i in range(self.zk.size)):
                return False
            if any(self.zk.mode(i) is None for i in range(self.zk.size)):
                return False
            try:
                return self.connector_members() == expected
            except Exception:  # ZooKeeper still electing after a node came back
                return False

        wait_for(whole, timeout=timeout, what="every lab process running and joined", interval=0.1)
