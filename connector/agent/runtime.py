"""Wiring a real connector from its configuration, and running it until a signal.

    config = load_config("connector.toml")
    run(config)     # blocks; SIGTERM/SIGINT release the lease at once and return;
                    # SIGHUP re-reads the CAs' auth material (connector.agent.reload)

:func:`build` assembles the pieces (service client, CA router over CFSSL,
key pool, metrics and the /metrics /healthz /readyz server, the elector with
the agent as its observer) without starting anything, so tests can start and
stop one in-process.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from cryptography import x509

from connector.agent.events import Event, emit
from connector.agent.loop import Agent
from connector.agent.ports import Pki
from connector.agent.probes import Probe, ReachProber, probe_of
from connector.agent.reach import Reach, ca_target
from connector.agent.reload import reload_in_background
from connector.agent.snapshot import Standing, standing_from_role
from connector.agent.state import ExecutorDeps
from connector.ca import CAError, CARouter, ca_from_dict, is_retryable
from connector.config import ConnectorConfig
from connector.health import HealthServer
from connector.identity import (
    CertificateRenewer,
    ConnectorIdentity,
    check_secret_files,
    service_client_tls,
)
from connector.metrics import ConnectorMetrics
from connector.pki import KeyPool, KeyType, PrivateKey, build_csr, generate_key, pack_pfx, seal
from connector.service_client import CertificateRequest, ServiceClient
from election import Elector, HandOver, YieldBudget

__all__ = ["Runtime", "build", "run"]

log = logging.getLogger("pfxha.connector")


class _KraCertificate:
    """The service's KRA certificate, fetched on first use and kept."""

    def __init__(self, service: ServiceClient) -> None:
        self._service = service
        self._cert: x509.Certificate | None = None
        self._lock = threading.Lock()

    def get(self) -> x509.Certificate:
        with self._lock:
            if self._cert is None:
                self._cert = self._service.kra_certificate()
            return self._cert


def _variables(request: CertificateRequest) -> dict[str, str]:
    variables = dict(request.variables)
    variables.setdefault("DeviceId", request.device_id)
    return variables


def metered_keygen(
    metrics: ConnectorMetrics, generate: Callable[[KeyType], PrivateKey] = generate_key
) -> Callable[[KeyType], PrivateKey]:
    """``generate``, reporting what each key cost its thread's CPU to ``metrics``.

    Thread CPU time, not wall time: a key made while other threads share the
    core costs the same, so the histogram shows what keys cost this host.
    """

    def generate_metered(key_type: KeyType) -> PrivateKey:
        started = time.thread_time()
        key = generate(key_type)
        metrics.observe_key_generation(time.thread_time() - started, key_type=str(key_type))
        return key

    return generate_metered


def make_pki(pool: KeyPool, kra: Callable[[], x509.Certificate]) -> Pki:
    return Pki(
        new_key=lambda key_type: pool.take(KeyType.parse(key_type)),
        build_csr=lambda request, key: build_csr(
            key,
            request.profile.subject_template,
            request.profile.san_templates,
            _variables(request),
        ),
        pack_pfx=lambda key, cert, chain: pack_pfx(key, cert, chain, "pfxha"),
        seal=lambda pfx: seal(pfx, kra()),
    )


@dataclass
class Runtime:
    config: ConnectorConfig
    agent: Agent
    elector: Elector
    service: ServiceClient
    router: CARouter
    pool: KeyPool
    metrics: ConnectorMetrics
    health: HealthServer
    kra: _KraCertificate | None = None
    certdb_probe: CertDBProbe | None = None
    reach_prober: ReachProber | None = None

    def start(self, *, retry_for_s: float = 0.0) -> None:
        """Serve health, fill the key pool, join the election (the loop is :meth:`serve`).

        ZooKeeper may come up after the connector (a lab, a boot): joining is
        retried for ``retry_for_s`` seconds before the error propagates.
        """
        self.health.start()
        if self.certdb_probe is not None:
            self.certdb_probe.start()
        if self.reach_prober is not None:
            self.reach_prober.start()
        self.pool.start()
        emit(
            log,
            Event.KEYPOOL_STARTED,
            **{"types": self.config.loop.keypool_types, "size": self.config.loop.keypool_size},
        )
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                self.elector.start()
                break
            except Exception as exc:
                if time.monotonic() >= deadline or self.agent.stop_requested:
                    raise
                log.warning("joining the election failed, retrying: %s", exc)
                time.sleep(1.0)
        if self.kra is not None:
            # Fetched while standing by, so the first PFX after a takeover does not
            # wait for it (a service that is down now: fetched on first use).
            with contextlib.suppress(Exception):
                self.kra.get()

    def serve(self) -> None:
        self.agent.run()

    def close(self) -> None:
        if self.certdb_probe is not None:
            self.certdb_probe.stop()
        if self.reach_prober is not None:
            self.reach_prober.stop()
        with contextlib.suppress(Exception):
            self.elector.stop()
        self.pool.stop()
        self.health.stop()
        for ca in self.router.cas.values():
            with contextlib.suppress(Exception):
                ca.close()  # type: ignore[attr-defined]
        self.service.close()


def build(config: ConnectorConfig) -> Runtime:
    """Assemble a connector from ``config``; nothing is started yet."""
    name = config.connector.name
    election_config = config.election_config()
    loop = config.loop
    metrics = ConnectorMetrics(name=name, cluster=config.connector.cluster)
    # Issue 8: refuse to start on a secret file others may read.
    check_secret_files(
        [
            config.zookeeper.auth_password_file,
            *(c.auth_key_file for c in config.cas),
            *(c.certdb_password_file for c in config.cas),
            *(c.role_id_file for c in config.cas),
            *(c.secret_id_file for c in config.cas),
            *(c.client_key_file for c in config.cas),
        ]
    )
    for ca in config.cas:
        if ca.reconcile == "off":
            # The operator's explicit choice, but never a quiet one.
            emit(
                log,
                Event.RECONCILE_OFF,
                ca=ca.name,
                effect="orphans a deposed leader leaves at this CA are never found or revoked",
            )
    service = ServiceClient(
        config.service.url,
        timeout=config.service.timeout_s,
        **service_client_tls(config.service.ca_file, config.service.identity_dir),
    )
    cas = {ca.name: ca_from_dict(ca.as_spec(), timeout=ca.timeout_s) for ca in config.cas}
    router = CARouter(
        cas,
        {t: list(names) for t, names in config.templates.items()},
        call_timeout_s=min(ca.timeout_s for ca in config.cas),
        breaker_threshold=loop.breaker_threshold,
        breaker_reset_s=loop.breaker_reset_s,
    )
    key_types = [KeyType.parse(word) for word in loop.keypool_types.split(",") if word.strip()]
    pool = KeyPool(
        {kt: loop.keypool_size for kt in key_types},
        workers=1,
        generate=metered_keygen(metrics),
        on_demand=loop.keys_at_once or None,
    )
    metrics.watch_key_pool(pool.available, [kt.value for kt in key_types], loop.keypool_size)
    metrics.watch_certdb_index(router.certdb_indexed_rows, router.cas)
    kra = _KraCertificate(service)
    lease = _LateLease()
    lease.budget = YieldBudget(loop.yield_budget, loop.yield_budget_window_s).validate()
    reach = Reach(stale_s=2 * loop.probe_interval_s + loop.probe_timeout_s)
    deps = ExecutorDeps(
        name=name,
        service=service,
        issuer=router,
        pki=make_pki(pool, kra.get),
        lease=lease,
        ca_errors=(CAError,),
        is_retryable=is_retryable,
        batch_size=loop.batch_size,
        poll_wait_s=loop.poll_wait_s,
        workers=loop.workers,
        max_in_hand=loop.max_in_hand,
        ca_deadline_s=loop.ca_deadline_s,
        backoff_s=loop.backoff_s,
        lease_budget_s=config.zookeeper.session_timeout,
        metrics=metrics,
        details=lambda: {"version": metrics_version(), "cas": router.ca_states()},
        on_service_outcome=lambda ok: reach.record("service", ok=ok),
        on_ca_answer=lambda ca: reach.record(ca_target(ca), ok=True),
        ca_failing=lambda ca: reach.unreachable_for(ca_target(ca)) > 0,
        loop_call_timeout_s=loop_call_timeout(config),
        late_window_s=loop.late_window_s,
    )
    agent = Agent(deps=deps, elector=None, templates=config.templates, loop=loop, reach=reach)
    elector = Elector(election_config, observers=[agent])
    agent.elector = elector
    lease.target = elector
    host, port = config.metrics.host_port
    health = HealthServer(metrics.registry, host=host, port=port, provider=agent.health_snapshot)
    probe = CertDBProbe(
        router,
        interval_s=loop.certdb_probe_s,
        on_change=agent.wake,
        warm=lambda: standing_from_role(elector.role) is Standing.STANDBY,
    )
    probes: dict[str, Probe] = {"service": probe_of(service.probe)}
    for ca in config.cas:
        probes[ca_target(ca.name)] = probe_of(partial(router.probe, ca.name))
    prober = ReachProber(
        reach,
        probes,
        interval_s=loop.probe_interval_s,
        timeout_s=loop.probe_timeout_s,
        on_change=agent.reach_changed,
        on_outcome=metrics.set_reachable,
    )
    return Runtime(
        config, agent, elector, service, router, pool, metrics, health, kra, probe, prober
    )


def loop_call_timeout(config: ConnectorConfig) -> float | None:
    """How long one of the loop's service calls may block it past a long-poll's wait.

    With yielding on, the loop must be free to decide by ``yield_after_s`` after a
    link started swallowing packets: a poll then ends within ``yield_after_s``.
    """
    loop = config.loop
    if loop.yield_after_s == 0:
        return None
    return min(config.service.timeout_s, loop.yield_after_s - loop.poll_wait_s)


def metrics_version() -> str:
    from connector._version import __version__

    return __version__


class CertDBProbe:
    """Asks every CA's certdb, every ``interval_s``, whether it answers; logs each change.

    The answers land where health, readiness, metrics and the loop read them
    (:meth:`CARouter.reconcile_states`); a certdb that answers again wakes the
    loop (``on_change``), so intents that waited for it are reconciled soon.
    """

    def __init__(
        self,
        router: CARouter,
        *,
        interval_s: float,
        on_change: Callable[[], None] = lambda: None,
        warm: Callable[[], bool] = lambda: False,
    ) -> None:
        self.router = router
        self.interval_s = interval_s
        self.on_change = on_change
        # True while a standby: it then parses what the CAs issued since it last
        # looked, so its first search as leader (the takeover's) reads only the rest.
        self.warm = warm
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready: dict[str, bool] = {}

    def probe_once(self) -> None:
        for name, state in self.router.probe_certdbs().items():
            was = self._ready.get(name)
            self._ready[name] = state.ready
            if was == state.ready or (was is None and state.ready):
                continue
            if state.ready:
                emit(log, Event.CERTDB_AVAILABLE, ca=name, certdb=state.detail)
                self.on_change()
            else:
                emit(log, Event.CERTDB_UNAVAILABLE, ca=name, error=state.detail)
        if self.warm():
            self.router.warm_certdbs()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.probe_once()
            except Exception:  # a probe must never end the probing
                log.exception("certdb probe failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pfxha-certdb-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class _LateLease:
    """The elector, attached after construction (it needs the agent as observer first)."""

    target: Elector | None = None
    budget: YieldBudget = YieldBudget()

    def fresh_epoch(self) -> int | None:
        return None if self.target is None else self.target.fresh_epoch()

    def release(self, reason: str) -> None:
        if self.target is not None:
            self.target.release(reason)

    def hand_over(self, to: str, reason: str) -> HandOver:
        if self.target is None:
            return HandOver(False, "no elector")
        return self.target.hand_over(to, reason, self.budget)

    def leave(self, reason: str) -> None:
        # Elector.stop() hands the lease over in one round trip and closes the
        # session: the member and election nodes go with it. Nothing rejoins.
        if self.target is not None:
            self.target.stop()


@contextlib.contextmanager
def _signals(runtime: Runtime) -> Iterator[None]:
    agent = runtime.agent

    def handler(signum: int, _frame: FrameType | None) -> None:
        emit(log, Event.RELEASED, reason=f"signal {signal.Signals(signum).name}", pending=True)
        agent.request_stop()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        reload_in_background(runtime.router, runtime.config.cas)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(config: ConnectorConfig, *, start_timeout_s: float = 60.0) -> None:
    """Build, start and serve a connector until SIGTERM/SIGINT."""
    runtime = build(config)  # refuses insecure secret files before anything is touched
    # One line per HTTP request would drown the connector's own events.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with _signals(runtime), _renewal(config, runtime):
        try:
            runtime.start(retry_for_s=start_timeout_s)
            runtime.serve()
        finally:
            runtime.close()


def _renewal(config: ConnectorConfig, runtime: Runtime) -> contextlib.AbstractContextManager[Any]:
    """Keep the connector certificate fresh (issue 8), when the connector has one."""
    settings = config.service
    if not settings.identity_dir:
        return contextlib.nullcontext()
    return CertificateRenewer(
        ConnectorIdentity.load(Path(settings.identity_dir)),
        settings.url,
        verify=settings.ca_file or True,
        reload=runtime.service.reload_client_certificate,
        metrics=runtime.metrics,
        check_every_s=settings.renew_check_s,
    )
