"""A 1- or 3-node ZooKeeper ensemble from the Debian package, on free loopback ports.

    with ZooKeeperEnsemble(run_dir / "zk", size=3) as zk:
        client = KazooClient(hosts=zk.hosts)         # "127.0.0.1:p1,127.0.0.1:p2,..."
        zk.kill_node(zk.leader_index())               # SIGKILL the quorum leader
        zk.start_node(i)                              # bring it back, same data dir
    # leaving the block stops every node cleanly (SIGTERM)

Each node has its own directory ``run_dir/zk<i>/`` with ``zoo.cfg``, ``data/`` (0700:
snapshots and logs hold every node's data and the digest ACLs' hashes)
(``myid``, snapshots, transaction log) and ``zookeeper.log``. Starting again from
the same ``run_dir`` reuses the data, so persistent nodes (the election epoch)
survive a restart of the whole ensemble.

On lab hosts (network namespaces, see chaos/launch/netns.py), give each node its
host: ``ZooKeeperEnsemble(run_dir, placement=[zk1, zk2, zk3])``; every node then
runs inside its host and serves on its address, on the standard ports.

Timing is scaled down so 1 s client sessions are allowed: ``tickTime`` 100 ms
by default, ``minSessionTimeout`` two ticks. ``fsync`` is off by default: on a
busy shared lab machine an fsync can stall every write for hundreds of
milliseconds, and a clean stop/start (not a power cut) loses nothing either way.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from chaos.launch._process import LaunchError, ManagedProcess, free_port, wait_for
from chaos.launch.netns import Host

__all__ = ["ZOOKEEPER_JAR", "ZooKeeperEnsemble", "four_letter_word"]

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# The jar's manifest carries the Debian classpath of its dependencies; we only add a
# logging binding (slf4j-simple writes to stderr, i.e. to the node's log file) and the
# package's conf dir, as /etc/zookeeper/conf/environment does.
_EXTRA_CLASSPATH = (Path("/etc/zookeeper/conf"), Path("/usr/share/java/slf4j-simple.jar"))
_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
_FOUR_LETTER_WORDS = "ruok,srvr,mntr,stat"


def four_letter_word(port: int, word: str, host: str = "127.0.0.1", timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter word (``ruok``, ``srvr``, ``mntr``) and return the reply.

    Returns "" when the node does not answer (down, starting, or refusing).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word.encode("ascii"))
            chunks: list[bytes] = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode("utf-8", errors="replace")


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class _Ports:
    client: int
    quorum: int
    election: int

    def all(self) -> tuple[int, int, int]:
        return (self.client, self.quorum, self.election)


class ZooKeeperEnsemble:
    """``size`` ZooKeeper servers (1 = standalone, 3 = a quorum) under ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        size: int = 1,
        tick_ms: int = 100,
        heap_mb: int = 256,
        fsync: bool = False,
        start_timeout: float = 60.0,
        java: str = "java",
        placement: Sequence[Host] | None = None,
        sync_limit_s: float = 2.0,
        max_election_wait_ms: int = 60000,
        connect_timeout_ms: int = 1000,
    ) -> None:
        """``placement``: one lab host per node (``size`` is then its length); each node
        runs inside its host on the standard ports (2181, 2888, 3888) of its address."""
        if placement is not None:
            size = len(placement)
        if size not in (1, 3, 5):
            raise ValueError(f"size must be 1, 3 or 5, got {size}")
        if tick_ms < 10:
            raise ValueError(f"tick_ms must be at least 10, got {tick_ms}")
        self.run_dir = Path(run_dir)
        self.size = size
        self.tick_ms = tick_ms
        self.heap_mb = heap_mb
        self.fsync = fsync
        self.start_timeout = start_timeout
        self.java = java
        self.placement = list(placement) if placement is not None else None
        # How long a follower waits on a silent quorum leader before electing anew.
        self.sync_limit_s = sync_limit_s
        self.max_election_wait_ms = max_election_wait_ms
        # cnxTimeout: how long a server waits on a peer's election port (a dropped SYN).
        self.connect_timeout_ms = connect_timeout_ms
        self._ports: list[_Ports] = []
        self._nodes: list[ManagedProcess] = []

    def address(self, index: int) -> str:
        """The address node ``index`` serves on (its host's, or loopback)."""
        return self.placement[index].address if self.placement is not None else "127.0.0.1"

    # -- public surface -------------------------------------------------------------

    @property
    def hosts(self) -> str:
        """The client connect string, e.g. ``"127.0.0.1:41234,127.0.0.1:41240,..."``."""
        self._require_configured()
        return ",".join(f"{self.address(i)}:{p.client}" for i, p in enumerate(self._ports))

    @property
    def client_ports(self) -> list[int]:
        self._require_configured()
        return [p.client for p in self._ports]

    @property
    def min_session_timeout_s(self) -> float:
        return 2 * self.tick_ms / 1000.0

    def node(self, index: int) -> ManagedProcess:
        """The process of node ``index`` (0-based), for pause/resume and pid."""
        self._require_configured()
        return self._nodes[index]

    def start(self) -> None:
        """Start every node and wait until each one serves clients."""
        self._check_installation()
        if not self._ports:
            if self.placement is not None:  # own hosts: the standard ports, as deployed
                self._ports = [_Ports(2181, 2888, 3888) for _ in range(self.size)]
            else:
                self._ports = [
                    _Ports(free_port(), free_port(), free_port()) for _ in range(self.size)
                ]
            self._nodes = [self._make_node(i) for i in range(self.size)]
        for i in range(self.size):
            self._write_config(i)
        for i in range(self.size):
            self._launch(i)
        try:
            self.wait_serving()
        except LaunchError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node cleanly (SIGTERM, SIGKILL after a grace period)."""
        for node in self._nodes:
            node.stop(grace=10.0)

    def wait_serving(self, indices: list[int] | None = None, timeout: float | None = None) -> None:
        """Wait until the given nodes (default: all running ones) serve client requests."""
        wanted = indices if indices is not None else list(range(self.size))
        for i in wanted:
            node = self._nodes[i]

            def serving(i: int = i, node: ManagedProcess = node) -> bool:
                if not node.running():
                    raise LaunchError(
                        f"ZooKeeper node {i} exited with code {node.returncode()}; "
                        f"log {node.log_path}:\n{node.tail()}"
                    )
                return self.mode(i) is not None

            wait_for(
                serving,
                timeout=timeout if timeout is not None else self.start_timeout,
                what=f"ZooKeeper node {i} to serve on port {self._ports[i].client}",
            )

    def mode(self, index: int) -> str | None:
        """``"leader"``, ``"follower"`` or ``"standalone"``; None while not serving."""
        reply = four_letter_word(self._ports[index].client, "srvr", host=self.address(index))
        for line in reply.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def leader_index(self) -> int | None:
        """Index of the node that is the quorum leader (or the standalone node), else None."""
        for i in range(self.size):
            if self._nodes[i].running() and self.mode(i) in ("leader", "standalone"):
                return i
        return None

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``: a crash, its sockets closed by the kernel."""
        self._nodes[index].kill()

    def stop_node(self, index: int) -> None:
        """Stop node ``index`` cleanly."""
        self._nodes[index].stop(grace=10.0)

    def start_node(self, index: int, *, wait: bool = True) -> None:
        """Start node ``index`` again from its data dir; by default wait until it serves.

        A single restarted node of a quorum only serves once it has a quorum again.
        """
        self._launch(index)
        if wait:
            self.wait_serving([index])

    def pause_node(self, index: int) -> None:
        self._nodes[index].pause()

    def resume_node(self, index: int) -> None:
        self._nodes[index].resume()

    def __enter__(self) -> ZooKeeperEnsemble:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------

    def _require_configured(self) -> None:
        if not self._ports:
            raise LaunchError("the ZooKeeper ensemble has not been started")

    def _check_installation(self) -> None:
        if shutil.which(self.java) is None:
            raise LaunchError(
                f"Java not found ({self.java!r} is not on PATH); install the Debian package "
                "default-jre-headless (it comes with zookeeper)"
            )
        if not ZOOKEEPER_JAR.is_file():
            raise LaunchError(
                f"ZooKeeper not found: {ZOOKEEPER_JAR} is missing; "
                "install the Debian package zookeeper"
            )

    def _node_dir(self, index: int) -> Path:
        return self.run_dir / f"zk{index + 1}"

    def data_dir(self, index: int) -> Path:
        """Node ``index``'s snapshots and transaction logs (0700)."""
        return self._node_dir(index) / "data"

    def _classpath(self) -> str:
        parts = [str(p) for p in _EXTRA_CLASSPATH if p.exists()]
        parts.insert(1 if parts else 0, str(ZOOKEEPER_JAR))
        return ":".join(parts)

    def _make_node(self, index: int) -> ManagedProcess:
        node_dir = self._node_dir(index)
        argv = [
            self.java,
            f"-Xmx{self.heap_mb}m",
            f"-Xms{min(self.heap_mb, 32)}m",
            # Two cores shared by many processes: few GC and compiler threads.
            "-XX:+UseSerialGC",
            "-XX:CICompilerCount=2",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.admin.enableServer=false",
            # Between a failed election round and the next, ZooKeeper doubles its
            # wait up to 60 s; with a peer blackholed (a crashed or cut host) two
            # rounds can fail and the survivors sit out seconds without a leader.
            f"-Dzookeeper.fastleader.maxNotificationInterval={self.max_election_wait_ms}",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            # Wall-clock UTC times, to line up with the connectors' and the drill's logs
            # (the default is milliseconds since the JVM started).
            "-Duser.timezone=UTC",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS'Z'",
            "-cp",
            self._classpath(),
            _MAIN_CLASS,
            str(node_dir / "zoo.cfg"),
        ]
        if self.placement is not None:
            argv = self.placement[index].wrap(argv)
        return ManagedProcess(f"zk{index + 1}", argv, log_path=node_dir / "zookeeper.log")

    def _write_config(self, index: int) -> None:
        node_dir = self._node_dir(index)
        data_dir = self.data_dir(index)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir.chmod(0o700)  # also a data dir made before (mkdir keeps its mode)
        ports = self._ports[index]
        lines = [
            f"tickTime={self.tick_ms}",
            # Followers get 5 s to sync at start and sync_limit_s to stay in step.
            f"initLimit={max(10, 5000 // self.tick_ms)}",
            f"syncLimit={max(2, round(self.sync_limit_s * 1000 / self.tick_ms))}",
            f"dataDir={data_dir}",
            f"clientPort={ports.client}",
            f"clientPortAddress={self.address(index)}",
            f"minSessionTimeout={2 * self.tick_ms}",
            "maxSessionTimeout=60000",
            "maxClientCnxns=200",
            f"4lw.commands.whitelist={_FOUR_LETTER_WORDS}",
            "admin.enableServer=false",
            f"forceSync={'yes' if self.fsync else 'no'}",
            # 4 MB instead of 64 MB preallocated log files: many ensembles share a disk.
            "preAllocSize=4096",
            "autopurge.snapRetainCount=3",
            "autopurge.purgeInterval=1",
            "reconfigEnabled=false",
        ]
        if self.size == 1:
            lines.append("standaloneEnabled=true")
        else:
            lines.append("standaloneEnabled=false")
            lines.append(f"cnxTimeout={self.connect_timeout_ms}")
            for i, p in enumerate(self._ports):
                lines.append(f"server.{i + 1}={self.address(i)}:{p.quorum}:{p.election}")
            (data_dir / "myid").write_text(f"{index + 1}\n")
        (node_dir / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def _launch(self, index: int) -> None:
        ports = self._ports[index]
        # A node on a lab host binds in its own namespace, which this one cannot check.
        taken = [] if self.placement else [p for p in ports.all() if not _port_free(p)]
        if taken:
            raise LaunchError(
                f"ZooKeeper node {index + 1}: port(s) {', '.join(map(str, taken))} on "
                "127.0.0.1 already in use (another ZooKeeper still running, or a port "
                "grabbed by another process)"
            )
        node = self._nodes[index]
        node.start()
        # A JVM that cannot bind or parse its config exits within a moment; say so
        # now rather than as a vague readiness timeout.
        with contextlib.suppress(LaunchError):
            wait_for(lambda: not node.running(), timeout=0.3, what="early exit", interval=0.05)
        if not node.running():
            raise LaunchError(
                f"ZooKeeper node {index + 1} exited at start (code {node.returncode()}); "
                f"log {node.log_path}:\n{node.tail()}"
            )
