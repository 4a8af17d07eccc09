"""The connector's metric families and their label words, each registered once.

    families = MetricFamilies(CollectorRegistry(), name="pfx-a", cluster="prod")
    families.issue_cpu.labels(stage="ca").inc(0.002)
    families.role.state("leader")                      # one of ROLES
    assert TAKEOVER_SLO_SECONDS in TAKEOVER_BUCKETS

Code outside this package uses :class:`connector.metrics.ConnectorMetrics`,
which is a :class:`MetricFamilies` with the setters that validate label words
and skip unchanged state gauges; it re-exports the constants here. This module
only names, describes and registers: the names and help texts are the public
contract ``deploy/prometheus`` and ``deploy/grafana`` rely on, kept apart from
the code that updates them so one can be reviewed without the other.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info

from connector._version import __version__

__all__ = [
    "CIRCUIT_STATES",
    "FAST_PATH_STATES",
    "KEYGEN_CPU_BUCKETS",
    "LATENCY_BUCKETS",
    "ORPHAN_FINDS",
    "PLACEMENT_MOVES",
    "REQUEST_KINDS",
    "ROLES",
    "SESSION_STATES",
    "TAKEOVER_BUCKETS",
    "TAKEOVER_SLO_SECONDS",
    "ZK_SEATS",
    "MetricFamilies",
]

ROLES = ("standby", "leader", "suspended", "stopped")
# "connecting" first: prometheus_client starts an Enum in its first state, and
# a connector that has not reached ZooKeeper yet must not look connected.
SESSION_STATES = ("connecting", "connected", "suspended", "lost")
CIRCUIT_STATES = ("closed", "open", "half_open")
# election.FastPath's values; "idle" first, the state before anything is known.
FAST_PATH_STATES = ("idle", "armed", "unavailable")
# election.ZkSeat's words: what the ZooKeeper server on this member's host is.
ZK_SEATS = ("unknown", "follower", "leader")
PLACEMENT_MOVES = ("hand_over", "requeue", "refused")
REQUEST_KINDS = ("issue", "revoke")
# How an orphan was found: a reconciliation's search, or a late watch's.
ORPHAN_FINDS = ("reconcile", "late")

# CA round trips plus key generation: milliseconds for EC keys, seconds for
# RSA 4096 or a slow CA; the tail up to the retry budget.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The failover SLO is a bucket boundary so the alert can count slower takeovers
# exactly: deploy/prometheus/alerts.yml uses le="5.0".
TAKEOVER_SLO_SECONDS = 5.0
TAKEOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, TAKEOVER_SLO_SECONDS, 10.0, 30.0, 60.0)
# CPU one private key costs: under a millisecond for EC, tens of milliseconds
# for RSA-2048, about a second for RSA-4096 on a slow core.
KEYGEN_CPU_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class MetricFamilies:
    """Every metric family of one connector, registered on ``registry`` on creation.

    Registering a name twice on one registry raises, so each instance needs a
    registry of its own. ``name`` and ``cluster`` go into ``pfxha_connector_build``.
    """

    def __init__(self, registry: CollectorRegistry, *, name: str, cluster: str) -> None:
        self.registry = registry

        self.role = Enum(
            "pfxha_connector_role",
            "Role of this connector in the election: exactly one leader per cluster.",
            states=list(ROLES),
            registry=registry,
        )
        self.epoch = Gauge(
            "pfxha_connector_epoch",
            "Fencing epoch of the current leadership as this connector knows it "
            "(its own while it leads).",
            registry=registry,
        )
        self.leadership_transitions = Counter(
            "pfxha_connector_leadership_transitions",
            "Role changes of this connector, by the role entered and the reason.",
            ["role", "reason"],
            registry=registry,
        )
        self.takeover_duration = Histogram(
            "pfxha_connector_takeover_duration_seconds",
            "Time from this connector winning the election to being registered with "
            "the service under its new epoch (observed once per leadership).",
            buckets=TAKEOVER_BUCKETS,
            registry=registry,
        )
        self.zookeeper_session_state = Enum(
            "pfxha_connector_zookeeper_session_state",
            "State of this connector's ZooKeeper session.",
            states=list(SESSION_STATES),
            registry=registry,
        )
        self.fast_path_state = Enum(
            "pfxha_connector_fast_path_state",
            "Crash detection of the leader as this connector sees it: armed (a connection "
            "to the leader's liveness socket, verified by its greeting, is held: a crash "
            "is noticed at once), unavailable (no verified connection: a crash waits for "
            "the ZooKeeper session timeout), idle (leading, or the fast path is off).",
            states=list(FAST_PATH_STATES),
            registry=registry,
        )
        self.requests_processed = Counter(
            "pfxha_connector_requests_processed",
            "Certificate requests (kind=issue) and revocations (kind=revoke) finished "
            "by this connector, by result, template and issuing CA.",
            ["kind", "result", "template", "ca"],
            registry=registry,
        )
        self.issuance_duration = Histogram(
            "pfxha_connector_issuance_duration_seconds",
            "Time to issue one certificate: key generation, CSR, CA round trip, PFX "
            "and envelope, upload.",
            ["ca"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.revocation_duration = Histogram(
            "pfxha_connector_revocation_duration_seconds",
            "Time to revoke one certificate at its issuing CA and acknowledge it.",
            ["ca"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.key_generation_cpu = Histogram(
            "pfxha_connector_key_generation_cpu_seconds",
            "CPU time (of the generating thread) one private key cost, pooled or made on "
            "demand, by key type: the floor under every issuance's cost.",
            ["key_type"],
            buckets=KEYGEN_CPU_BUCKETS,
            registry=registry,
        )
        self.issue_cpu = Counter(
            "pfxha_connector_issue_cpu_seconds",
            "CPU time the issuing threads spent per stage of a request (key, csr, intent, "
            "ca, pfx, seal, upload, other): where a leader's cores go beyond its keys.",
            ["stage"],
            registry=registry,
        )
        self.keys_pooled = Gauge(
            "pfxha_connector_keys_pooled",
            "Private keys ready in the key pool, by key type. A standby with an empty pool "
            "makes its first keys on demand after a takeover (tens of milliseconds each).",
            ["key_type"],
            registry=registry,
        )
        self.certdb_indexed_rows = Gauge(
            "pfxha_connector_certdb_indexed_rows",
            "Certificates of a CA's certdb whose key this process has parsed and remembers "
            "(each search then reads only new rows and matches; ~400 bytes of memory a row).",
            ["ca"],
            registry=registry,
        )
        self.keys_pool_size = Gauge(
            "pfxha_connector_keys_pool_size",
            "How many keys the pool keeps ready per key type when full (loop.keypool_size).",
            ["key_type"],
            registry=registry,
        )
        self.ca_up = Gauge(
            "pfxha_connector_ca_up",
            "1 when the issuing CA answered its last health check, else 0.",
            ["ca"],
            registry=registry,
        )
        self.ca_circuit_state = Enum(
            "pfxha_connector_ca_circuit_state",
            "Circuit breaker state per issuing CA (open: calls are not attempted).",
            ["ca"],
            states=list(CIRCUIT_STATES),
            registry=registry,
        )
        self.reachable = Gauge(
            "pfxha_connector_reachable",
            "1 when this member's last probe of the target (service, ca:<name>) was "
            "answered, else 0 (every member probes; see work-aware leadership).",
            ["target"],
            registry=registry,
        )
        self.yields = Counter(
            "pfxha_connector_yields",
            "Voluntary hand-overs by this member as leader, by what it could not reach.",
            ["dependency"],
            registry=registry,
        )
        self.coordination_problems = Counter(
            "pfxha_connector_coordination_problems",
            "Coordination data no member would write, repaired or dropped by this member "
            "(kind: epoch, leader, switchover): someone with ZooKeeper write access "
            "tampered with the cluster's nodes.",
            ["kind"],
            registry=registry,
        )
        self.yields_refused = Counter(
            "pfxha_connector_yields_refused",
            "Hand-overs this leader wanted but the cluster's yield budget refused.",
            registry=registry,
        )
        self.zk_seat = Enum(
            "pfxha_connector_zk_seat",
            "What the ZooKeeper server on this member's host is (placement; unknown: "
            "placement off or the server not answering srvr).",
            states=list(ZK_SEATS),
            registry=registry,
        )
        self.placement_moves = Counter(
            "pfxha_connector_placement_moves",
            "Placement moves by this member (hand_over: as leader on the ZooKeeper "
            "leader's host; requeue: to the back of the line; refused: the placement "
            "budget was spent).",
            ["move"],
            registry=registry,
        )
        self.reconcile_ready = Gauge(
            "pfxha_connector_reconcile_ready",
            "1 when reconciliation can search this CA (its certdb answered the last call "
            "or probe, or reconcile is off on purpose), else 0: a deposed leader's "
            "intents at this CA wait, and the connector is not ready.",
            ["ca"],
            registry=registry,
        )
        self.reconcile_off = Gauge(
            "pfxha_connector_reconcile_off",
            '1 when the operator set reconcile = "off" for this CA: orphans a deposed '
            "leader left there are never searched for.",
            ["ca"],
            registry=registry,
        )
        self.intents_unreconciled = Gauge(
            "pfxha_connector_intents_unreconciled",
            "Older epochs' intents the last reconciliation could not settle because a "
            "certdb did not answer (they stay in flight, never issued anew, until it does).",
            registry=registry,
        )
        self.orphans_revoked = Counter(
            "pfxha_connector_orphans_revoked",
            "Certificates nobody can deliver, revoked (superseded) by this connector: found "
            "by a takeover's or a periodic reconciliation (found=reconcile), or turned up "
            "late for a key it had given up on (found=late; a standby revokes these too).",
            ["found"],
            registry=registry,
        )
        self.late_keys_watched = Gauge(
            "pfxha_connector_late_keys_watched",
            "Keys this connector gave up on and still searches the CAs for, in case a "
            "certificate for one arrives late (loop.late_window_s); standbys keep theirs.",
            registry=registry,
        )
        self.pending_requests = Gauge(
            "pfxha_connector_pending_requests",
            "Requests waiting at the service, as last seen by this connector while "
            "leading (0 on standbys).",
            ["kind"],
            registry=registry,
        )
        self.last_successful_poll = Gauge(
            "pfxha_connector_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll of the service (0: never).",
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "pfxha_connector_certificate_expiry_timestamp_seconds",
            "Unix time at which this connector's own client certificate expires (0: not enrolled).",
            registry=registry,
        )
        self.certificate_not_before = Gauge(
            "pfxha_connector_certificate_not_before_timestamp_seconds",
            "Unix time from which this connector's own client certificate is valid (0: not "
            "enrolled); with the expiry it gives the lifetime the expiry alerts are relative to.",
            registry=registry,
        )
        self.build_info = Info(
            "pfxha_connector_build",
            "Version of the connector software and this instance's identity.",
            registry=registry,
        )
        self.build_info.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "name": name,
                "cluster": cluster,
            }
        )
        for kind in REQUEST_KINDS:
            # Present from the first scrape, so rates and the backlog rule see 0
            # rather than nothing.
            self.pending_requests.labels(kind=kind).set(0)
