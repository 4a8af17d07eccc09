"""The lab's certificate authorities on real OpenBao PKI: a root mount and two issuing mounts.

    lab = OpenBaoLab(Path("runs/lab/openbao"), nodes=3, connectors=["c1", "c2", "c3"])
    lab.start()                    # Raft cluster up, initialised, unsealed, provisioned
    lab.describe("c1")             # [[ca]] tables (kind = "openbao") with c1's AppRole files
    lab.active_node()              # "bao1": the Raft leader, from sys/leader
    lab.kill("bao1")               # kill -9 of one node; the others elect a new leader
    lab.start("bao1")              # back (unsealed again), rejoins the cluster
    lab.stop()

    OpenBaoLab(tmp_path, nodes=0)  # `bao server -dev`: in memory, one process, for tests

    # A second cluster whose issuing mount chains to another root (another cluster's
    # root mount, or the CFSSL root in a mixed lab): no root mount of its own.
    OpenBaoLab(dir2, issuing=("secondary",), root=(lab.root_certificate_path,
                                                  lab.sign_intermediate))
    lab.add_auditor()             # a read-only AppRole for the drill's checkers

``nodes=3`` starts a Raft cluster on loopback (``performance_multiplier = 1``:
a new leader within seconds, not tens), initialises it with one unseal share
and unseals every node; the unseal key and root token live in 0600 files
under the run directory (``init.json``), as the lab's stand-in for an
operator's safe. ``nodes=0`` is dev mode (already unsealed, in memory).

Provisioning (first start; kept across restarts in Raft mode): the root mount
``pki_root`` (a self-signed lab root), and an issuing intermediate mount per
issuing CA (``pki_primary``, ``pki_secondary``) signed by it, each with CRL,
OCSP and issuer URLs on every node (so issued certificates carry CDP and
AIA), a role per template of :data:`connector.ca.STANDARD_PROFILES` (keeping
the CSR's CN, serialNumber and SANs), a policy with only what a connector
needs, and one AppRole per connector (role ID and secret ID in 0600 files).
The root token is used here only, never by connectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from chaos.launch._bao_node import (
    HOST,
    BaoNode,
    bao_binary,
    initialise,
    node_health,
    serving_leader,
    wait_unsealed,
    write_node_config,
)
from chaos.launch._bao_pki import (
    ROOT_MOUNT,
    create_approle,
    make_issuing_mount,
    make_root_mount,
    revoke_approle,
    sign_with_root_mount,
)
from chaos.launch._bao_policy import auditor_policy, connector_policy, role_body
from chaos.launch._process import (
    LaunchError,
    ManagedProcess,
    free_port,
    free_port_pair,
    wait_for,
)
from connector.ca._profiles import STANDARD_PROFILES, CaProfile
from connector.identity import write_private_file

__all__ = [
    "AUDITOR",
    "ISSUING",
    "ROOT_MOUNT",
    "OpenBaoLab",
    "auditor_policy",
    "bao_binary",
    "connector_policy",
    "role_body",
]

ISSUING = ("primary", "secondary")
AUDITOR = "pfxha-auditor"  # the AppRole the drill's checkers read the CA with


class OpenBaoLab:
    def __init__(
        self,
        run_dir: Path,
        *,
        nodes: int = 3,
        connectors: Sequence[str] = ("c1",),
        issuing: Sequence[str] = ISSUING,
        profiles: Mapping[str, CaProfile] | None = None,
        root: tuple[Path, Callable[[str], str]] | None = None,
    ) -> None:
        """``root``: (root certificate file, signer of an intermediate CSR PEM) when the
        issuing mounts chain to a root outside this cluster; None: a root mount here."""
        if nodes not in (0, 1, 3):
            raise ValueError("nodes must be 0 (dev mode), 1 or 3 (Raft)")
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        self.dev = nodes == 0
        self.connectors = tuple(connectors)
        self.issuing = tuple(issuing)
        self.profiles = dict(profiles if profiles is not None else STANDARD_PROFILES)
        self.external_root = root
        state = self._load_state()
        self.nodes: dict[str, BaoNode] = {
            name: BaoNode(name, port, cluster)
            for name, (port, cluster) in (
                state.get("nodes")
                or {f"bao{i + 1}": self._fresh_ports() for i in range(max(nodes, 1))}
            ).items()
        }
        self._procs: dict[str, ManagedProcess] = {}
        self._save_state()

    def _fresh_ports(self) -> tuple[int, int]:
        if self.dev:
            # Dev mode takes no cluster address: it binds the API port plus one.
            port = free_port_pair()
            return port, port + 1
        return free_port(), free_port()

    # -- state and secrets --------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.run_dir / "state.json"

    def _load_state(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded

    def _save_state(self) -> None:
        nodes = {n.name: (n.port, n.cluster_port) for n in self.nodes.values()}
        self._state_path.write_text(json.dumps({"nodes": nodes}, indent=1))

    @property
    def _init_path(self) -> Path:
        return self.run_dir / "init.json"  # unseal key + root token: 0600

    def _secrets(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self._init_path.read_text())
        return loaded

    @property
    def _root_token(self) -> str:
        return self._secrets()["root_token"]

    def credential_files(self, connector: str) -> tuple[Path, Path]:
        """(role_id_file, secret_id_file) of ``connector``'s AppRole, both 0600."""
        directory = self.run_dir / "approle" / connector
        return directory / "role-id", directory / "secret-id"

    # -- processes ----------------------------------------------------------------------

    def _proc(self, name: str) -> ManagedProcess:
        node = self.nodes[name]
        if self.dev:
            argv = [bao_binary(), "server", "-dev", f"-dev-listen-address={HOST}:{node.port}"]
            env = {"BAO_DEV_ROOT_TOKEN_ID": self._root_token}
        else:
            argv = [
                bao_binary(),
                "server",
                f"-config={write_node_config(node, self.nodes.values(), self.run_dir)}",
            ]
            env = {}
        log = self.run_dir / "logs" / f"{name}.log"
        return ManagedProcess(name, argv, log_path=log, env={**env, "BAO_LOG_LEVEL": "warn"})

    def _api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """A root-token call on whichever node answers as the active one."""
        last = ""
        for node in self._serving_order():
            try:
                reply = httpx.request(
                    method,
                    f"{node.url}/v1/{path}",
                    json=body,
                    headers={"X-Vault-Token": self._root_token},
                    timeout=30.0,
                )
            except httpx.HTTPError as exc:
                last = f"{node.name}: {exc!r}"
                continue
            if reply.status_code in (307, 429, 500, 503):
                last = f"{node.name}: HTTP {reply.status_code} {reply.text[:200]}"
                continue
            if reply.status_code >= 400:
                raise LaunchError(f"OpenBao {method} {path}: HTTP {reply.status_code} {reply.text}")
            return reply.json() if reply.content else {}
        raise LaunchError(f"OpenBao {method} {path}: no node answered ({last})")

    def _serving_order(self) -> list[BaoNode]:
        active = self.active_node()
        nodes = list(self.nodes.values())
        return sorted(nodes, key=lambda n: n.name != active)

    def active_node(self) -> str | None:
        """The Raft leader once it serves (:func:`serving_leader`); dev mode: the one
        node, once it answers as active."""
        running = {n: node for n, node in self.nodes.items() if self.running(n)}
        if len(self.nodes) == 1:
            return next((n for n, node in running.items() if node_health(node) == 200), None)
        if not self._init_path.exists():
            return None
        return serving_leader(running, self._root_token)

    def _all_voters(self) -> bool:
        servers = self._api("GET", "sys/storage/raft/configuration")["data"]["config"]["servers"]
        voters = {s["node_id"] for s in servers if s.get("voter")}
        return voters == set(self.nodes)

    def _unseal(self, node: BaoNode) -> None:
        wait_unsealed(node, self._secrets()["unseal_key"])

    def _init(self, node: BaoNode) -> None:
        initialise(node, self._init_path)

    def start(self, name: str | None = None) -> None:
        """Start every node (or one), unseal, and provision on the first start."""
        if self.dev and not any(self.running(n) for n in self.nodes):
            token = os.urandom(16).hex()
            write_private_file(self._init_path, json.dumps({"root_token": token}).encode())
        names = list(self.nodes) if name is None else [name]
        if self.dev:
            self._start_dev()
        else:
            for each in names:
                if self.running(each):
                    continue
                proc = self._procs.get(each) or self._proc(each)
                self._procs[each] = proc
                proc.start()
        fresh = not self._init_path.exists()
        if not self.dev:
            self._init(self.nodes[names[0]])
            # A new cluster: the first node alone; a restarted one needs its quorum back.
            for each in names[:1] if fresh else names:
                self._unseal(self.nodes[each])
            self._wait_active(names)
        if not self.dev and name is None and len(self.nodes) > 1:
            # Joiners start as non-voters and autopilot promotes them once stable (10 s
            # by default); until then losing the first node loses the quorum.
            self._api(
                "POST",
                "sys/storage/raft/autopilot/configuration",
                {"server_stabilization_time": "1s", "cleanup_dead_servers": False},
            )
        for each in names[1:] if fresh and not self.dev else []:
            self._unseal(self.nodes[each])
        if not self.dev and len(self.nodes) > 1:
            wait_for(self._all_voters, timeout=60, what="every OpenBao node a Raft voter")
        # Dev mode keeps nothing across a restart: provision whenever it starts anew.
        if not self.root_certificate_path.exists() or (self.dev and name is None):
            self.provision()

    def _start_dev(self, attempts: int = 3) -> None:
        """The dev server, on fresh ports again if it died at start-up: its ports were
        free when picked, but another program may bind one before it does."""
        (name,) = self.nodes
        for attempt in range(1, attempts + 1):
            if self.running(name):
                return
            proc = self._procs[name] = self._proc(name)
            proc.start()
            try:
                self._wait_active([name])
                return
            except LaunchError:
                if proc.running() or attempt == attempts:
                    raise
            port = free_port_pair()
            self.nodes = {name: BaoNode(name, port, port + 1)}
            self._save_state()

    def _wait_active(self, started: Sequence[str]) -> None:
        """Wait for an active node; fail at once, with the log's tail, if one we started
        exits (a port taken, a bad config) rather than at the deadline."""

        def settled() -> bool:
            for each in started:
                proc = self._procs[each]
                if not proc.running():
                    raise LaunchError(f"OpenBao {each} exited at start-up:\n{proc.tail()}")
            return self.active_node() is not None

        wait_for(settled, timeout=60, what="an active OpenBao node")

    def stop(self, name: str | None = None) -> None:
        for each in list(self.nodes) if name is None else [name]:
            proc = self._procs.get(each)
            if proc is not None:
                proc.stop(grace=10)

    def kill(self, name: str) -> None:
        """kill -9: the node is gone at once; a Raft standby takes over."""
        self._procs[name].kill()

    def pause(self, name: str) -> None:
        self._procs[name].pause()

    def resume(self, name: str) -> None:
        self._procs[name].resume()

    def running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.running()

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self._procs.items() if p.pid is not None and p.running()}

    def __enter__(self) -> OpenBaoLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- provisioning -------------------------------------------------------------------

    def mount(self, ca: str) -> str:
        return f"pki_{ca}"

    def _node_urls(self) -> list[str]:
        return [n.url for n in self.nodes.values()]

    def _make_root(self) -> str:
        """The root mount (a self-signed lab root); returns its certificate PEM."""
        return make_root_mount(self._api, self._node_urls())

    def sign_intermediate(self, csr: str) -> str:
        """This cluster's root mount signs an issuing CA's CSR (PEM in, certificate PEM out)."""
        return sign_with_root_mount(self._api, csr)

    def provision(self) -> None:
        """Root and issuing mounts, roles, policy, AppRoles: once per cluster."""
        sign: Callable[[str], str]
        if self.external_root is None:
            root = self._make_root()
            sign = self.sign_intermediate
        else:
            sign = self.external_root[1]
        for ca in self.issuing:
            signed = make_issuing_mount(
                self._api, ca, self.mount(ca), sign, self._node_urls(), self.profiles
            )
            (self.run_dir / f"{ca}.pem").write_text(signed.strip() + "\n")
        policy = connector_policy([self.mount(ca) for ca in self.issuing])
        self._api("PUT", "sys/policies/acl/pfxha-connector", {"policy": policy})
        self._api("POST", "sys/auth/approle", {"type": "approle"})
        for connector in self.connectors:
            self.add_connector(connector)
        if self.external_root is not None:  # read once the signer has signed: it exists
            root = self.external_root[0].read_text()
        (self.run_dir / "root.pem").write_text(root.strip() + "\n")

    def add_auditor(self) -> tuple[Path, Path]:
        """A read-only AppRole (``pfxha-auditor``): lists and reads certificates, nothing else."""
        mounts = [self.mount(ca) for ca in self.issuing]
        self._api("PUT", f"sys/policies/acl/{AUDITOR}", {"policy": auditor_policy(mounts)})
        return self.add_connector(AUDITOR, policy=AUDITOR)

    def add_connector(
        self, connector: str, *, token_ttl_s: int = 3600, policy: str = "pfxha-connector"
    ) -> tuple[Path, Path]:
        """An AppRole for ``connector`` (its own credential), files written 0600."""
        role_id, secret_id = create_approle(
            self._api, connector, token_ttl_s=token_ttl_s, policy=policy
        )
        role_file, secret_file = self.credential_files(connector)
        role_file.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(role_file.parent, 0o700)
        write_private_file(role_file, role_id.encode())
        write_private_file(secret_file, secret_id.encode())
        return role_file, secret_file

    def remove_connector(self, connector: str) -> None:
        """Take ``connector``'s access away: its secret-id destroyed, its tokens revoked.

        Its role stays (:meth:`add_connector` gives it a fresh secret-id again).
        """
        if connector == AUDITOR:
            raise LaunchError(f"{AUDITOR!r} is the checkers' own reader: it cannot be denied")
        _, secret_file = self.credential_files(connector)
        secret_id = secret_file.read_text().strip() if secret_file.exists() else None
        revoke_approle(self._api, connector, secret_id)

    # -- what connectors and checkers need ----------------------------------------------

    @property
    def root_certificate_path(self) -> Path:
        return self.run_dir / "root.pem"

    def ca_certificate_path(self, ca: str) -> Path:
        return self.run_dir / f"{ca}.pem"

    @property
    def root_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.root_certificate_path.read_bytes())

    def ca_certificate(self, ca: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_certificate_path(ca).read_bytes())

    @property
    def names(self) -> tuple[str, ...]:
        return self.issuing

    def ca_spec(self, ca: str, connector: str | None = None) -> dict[str, Any]:
        """One ``[[ca]]`` table (kind = "openbao") with ``connector``'s AppRole files."""
        role_file, secret_file = self.credential_files(connector or self.connectors[0])
        urls = [n.url for n in self.nodes.values()]
        return {
            "name": ca,
            "kind": "openbao",
            "url": urls[0],
            "cluster_urls": ",".join(urls[1:]) or None,
            "mount": self.mount(ca),
            "certificate": str(self.ca_certificate_path(ca)),
            "root": str(self.root_certificate_path),
            "role_id_file": str(role_file),
            "secret_id_file": str(secret_file),
        }

    def describe(self, connector: str | None = None) -> dict[str, Any]:
        """The issuing CAs as a connector's configuration would list them."""
        return {
            "root": str(self.root_certificate_path),
            "cas": {ca: self.ca_spec(ca, connector) for ca in self.issuing},
            "templates": {profile: list(self.issuing) for profile in self.profiles},
        }
