"""Every file under deploy/ is parsed and checked against the code's defaults.

Real tools where they exist here: systemd-analyze verify for the unit,
kubectl kustomize for the manifests, connector.config.load_config for every
connector configuration. Prometheus files are checked by promtool in
test_prometheus_rules.py, the dashboard in test_metric_names.py.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import MetricsSettings, load_config, parse_config
from connector.health import DEFAULT_HOST, DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
# The leader's liveness socket (fast path): fixed in every deployment, opened in
# the firewall table of docs/deployment.md.
LIVENESS_PORT = 9470

# Which test checks each file; test_every_deploy_file_is_checked keeps it complete.
CHECKED_BY = {
    "prometheus/prometheus.yml": "test_prometheus_rules (promtool check config)",
    "prometheus/recording.yml": "test_prometheus_rules (promtool check/test rules)",
    "prometheus/alerts.yml": "test_prometheus_rules (promtool check/test rules)",
    "prometheus/tests/alerts_test.yml": "test_prometheus_rules (promtool test rules)",
    "prometheus/tests/certificate_test.yml": "test_prometheus_rules (promtool test rules)",
    "prometheus/tests/zookeeper_test.yml": "test_prometheus_rules (promtool test rules)",
    "prometheus/file_sd/staging.yml.example": "test_prometheus_rules (installed as file_sd)",
    "grafana/pfxha-dashboard.json": "test_metric_names",
    "grafana/provisioning/dashboards.yml": "test_grafana_provisioning",
    "grafana/provisioning/datasources.yml": "test_grafana_provisioning",
    "zookeeper/zoo.cfg": "test_zookeeper_ensemble",
    "zookeeper/java.env": "test_zookeeper_jvm",
    "systemd/pfxha-connector.service": "test_systemd_unit_*",
    "systemd/pfxha-zk-exporter.service": "test_systemd_unit_verifies, test_zk_exporter_unit_*",
    "systemd/connector.toml": "test_connector_configs_load",
    "compose/compose.yaml": "test_compose",
    "compose/connector.toml": "test_connector_configs_load",
    "compose/Dockerfile": "test_dockerfile",
    "kubernetes/kustomization.yaml": "test_kustomize_builds",
    "kubernetes/namespace.yaml": "test_kubernetes_manifests",
    "kubernetes/configmap.yaml": "test_kubernetes_manifests",
    "kubernetes/secret.example.yaml": "test_kubernetes_manifests",
    "kubernetes/service.yaml": "test_kubernetes_manifests",
    "kubernetes/statefulset.yaml": "test_kubernetes_manifests",
    "kubernetes/poddisruptionbudget.yaml": "test_kubernetes_manifests",
    "kubernetes/servicemonitor.yaml": "test_kubernetes_manifests",
}

CONNECTOR_TOMLS = ["systemd/connector.toml", "compose/connector.toml"]


def test_every_deploy_file_is_checked() -> None:
    present = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    assert present - set(CHECKED_BY) == set(), "new deploy files need a check here"
    assert set(CHECKED_BY) - present == set(), "checked files that no longer exist"


def test_code_defaults_agree_on_the_metrics_port() -> None:
    assert MetricsSettings().host_port == (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 9464)


# Connector configurations ------------------------------------------------------


def _k8s_docs() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def _configs() -> list[tuple[str, Any]]:
    out = [(name, load_config(DEPLOY / name, environ={})) for name in CONNECTOR_TOMLS]
    raw = _k8s_docs()["ConfigMap"]["data"]["connector.toml"]
    import tomllib

    env = {"PFXHA_CONNECTOR_NAME": "pfxha-connector-0"}
    out.append(("kubernetes/configmap.yaml", parse_config(tomllib.loads(raw), env)))
    return out


def test_connector_configs_load() -> None:
    for name, config in _configs():
        # Deployed connectors are scraped from other machines.
        assert config.metrics.host_port == ("0.0.0.0", DEFAULT_PORT), name
        assert len(config.zookeeper.hosts.split(",")) == 3, name
        assert [ca.name for ca in config.cas] == ["primary", "secondary"], name
        # Secrets come from files, never from the config itself.
        assert config.zookeeper.auth_password_file, name
        assert all(ca.auth_key_file for ca in config.cas), name
        # Reconciliation reads each CA's certdb over the network, read-only.
        assert all(ca.certdb_dsn and ca.certdb_password_file for ca in config.cas), name
        assert all("pfxha_reader@" in str(ca.certdb_dsn) for ca in config.cas), name
        # The election accepts the timing (session timeout vs. lease and retries);
        # without the digest, whose password file exists only on the host.
        zk = replace(config.zookeeper, auth_user=None, auth_password_file=None)
        replace(config, zookeeper=zk).election_config()
        # A fixed liveness port: the one the firewall table opens.
        assert config.zookeeper.liveness_port == LIVENESS_PORT, name
    assert f"| {LIVENESS_PORT}/tcp" in (ROOT / "docs" / "deployment.md").read_text()


# ZooKeeper -----------------------------------------------------------------------


def _zoo_cfg() -> dict[str, str]:
    cfg: dict[str, str] = {}
    for line in (DEPLOY / "zookeeper" / "zoo.cfg").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not key=value: {line!r}"
            assert key not in cfg, f"{key} set twice"
            cfg[key.strip()] = value.strip()
    return cfg


def test_zookeeper_ensemble() -> None:
    cfg = _zoo_cfg()
    servers = {k: v for k, v in cfg.items() if k.startswith("server.")}
    assert sorted(servers) == ["server.1", "server.2", "server.3"]
    hosts = set()
    for spec in servers.values():
        host, quorum, election = spec.split(":")
        assert (quorum, election) == ("2888", "3888")
        hosts.add(host)
    assert len(hosts) == 3, "three hosts, one ZooKeeper node each"

    tick = int(cfg["tickTime"])
    low, high = int(cfg["minSessionTimeout"]), int(cfg["maxSessionTimeout"])
    assert 2 * tick <= low <= high <= 20 * tick * 2
    # Every deployed connector's session timeout is honoured, not clamped.
    for name, config in _configs():
        wanted_ms = config.zookeeper.session_timeout * 1000
        assert low <= wanted_ms <= high, f"{name}: session_timeout outside zoo.cfg bounds"
        ports = {h.rsplit(":", 1)[1] for h in config.zookeeper.hosts.split(",")}
        assert ports == {cfg["clientPort"]}, name
    systemd_hosts = load_config(DEPLOY / "systemd" / "connector.toml", environ={}).zookeeper.hosts
    assert {h.rsplit(":", 1)[0] for h in systemd_hosts.split(",")} == hosts
    assert {"srvr", "mntr", "ruok"} <= set(cfg["4lw.commands.whitelist"].split(","))
    assert cfg["admin.enableServer"] == "false"
    assert int(cfg["initLimit"]) > int(cfg["syncLimit"]) > 0


def test_zookeeper_jvm() -> None:
    text = (DEPLOY / "zookeeper" / "java.env").read_text()
    flags = re.search(r'^JVMFLAGS="([^"]*)"', text, re.MULTILINE)
    assert flags is not None
    heap = dict(re.findall(r"-(Xm[sx])(\d+m)", flags.group(1)))
    assert heap["Xms"] == heap["Xmx"], "a fixed heap avoids resize pauses"


# systemd ---------------------------------------------------------------------------


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / "pfxha-connector.service").read_text())
    return parser


def _unit_values(key: str) -> list[str]:
    text = (DEPLOY / "systemd" / "pfxha-connector.service").read_text()
    return re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)


def test_systemd_unit_essentials() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["ExecStart"].endswith("connector run --config /etc/pfxha/connector.toml")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM", "SIGTERM is the graceful handover"
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "DynamicUser"):
        assert service[hardening] in {"yes", "strict"}, hardening
    assert service["CapabilityBoundingSet"] == ""
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_credentials_match_the_example_config() -> None:
    loaded = {line.split(":", 1)[0] for line in _unit_values("LoadCredential")}
    config = load_config(DEPLOY / "systemd" / "connector.toml", environ={})
    prefix = "/run/credentials/pfxha-connector.service/"
    wanted = [config.zookeeper.auth_password_file] + [ca.auth_key_file for ca in config.cas]
    wanted += [ca.certdb_password_file for ca in config.cas]
    for path in wanted:
        assert path is not None
        assert path.startswith(prefix), f"{path} is not a systemd credential"
        assert path.removeprefix(prefix) in loaded


def test_systemd_checks_the_config_before_every_start() -> None:
    service = _unit()["Service"]
    assert service["ExecStartPre"] == service["ExecStart"] + " --check"


def test_systemd_identity_lives_in_the_state_directory() -> None:
    """ProtectSystem=strict leaves only StateDirectory= writable: renewal writes there."""
    service = _unit()["Service"]
    assert service["ProtectSystem"] == "strict"
    config = load_config(DEPLOY / "systemd" / "connector.toml", environ={})
    identity = config.service.identity_dir
    assert identity is not None
    assert identity.startswith(f"/var/lib/{service['StateDirectory']}/")
    assert service["StateDirectoryMode"] == "0700"
    assert config.service.ca_file is not None, "the service's TLS CA, not certifi's"


def test_https_cas_name_their_tls_bundle() -> None:
    """httpx checks https:// against certifi, not the system store: internal CAs need ca_file."""
    for name, config in _configs():
        for ca in config.cas:
            if ca.url.startswith("https://"):
                assert ca.ca_file, f"{name}: ca[{ca.name}] is https:// without ca_file"


def test_deployed_configs_pass_the_file_check(tmp_path: Path) -> None:
    """Every file a deployed config names, given real content, passes `--check`'s file check."""
    import tomllib

    from connector.config_files import file_problems
    from tests.fixtures.config_files import with_placeholder_files

    texts = {name: (DEPLOY / name).read_text() for name in CONNECTOR_TOMLS}
    texts["kubernetes/configmap.yaml"] = _k8s_docs()["ConfigMap"]["data"]["connector.toml"]
    for name, text in texts.items():
        raw = with_placeholder_files(tomllib.loads(text), tmp_path / name)
        config = parse_config(raw, {"PFXHA_CONNECTOR_NAME": "pfx1"})
        assert file_problems(config) == [], name


def _load_unit_seccomp() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("unit_seccomp", ROOT / "scripts/unit_seccomp.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_filter_allows_what_the_connector_calls(tmp_path: Path) -> None:
    """setpriority (the key pool's nice) is allowed; anything else unlisted fails with EPERM.

    The old unit (no SystemCallErrorNumber=, setpriority removed with @resources)
    killed the connector with SIGSYS; the integration test
    tests/integration/deploy/test_systemd_seccomp.py runs it under both filters.
    """
    import errno

    unit_seccomp = _load_unit_seccomp()
    groups = unit_seccomp.syscall_groups()
    lines = unit_seccomp.service_lines(DEPLOY / "systemd" / "pfxha-connector.service")
    allow_list, allowed, default = unit_seccomp.syscall_policy(lines, groups)
    assert allow_list
    assert default == errno.EPERM
    # Measured with strace -f -c: a connector enrolling, leading, issuing, stopping.
    measured = {"setpriority", "clone3", "epoll_wait", "futex", "getrandom", "prlimit64"}
    measured |= {"socket", "connect", "bind", "listen", "sendto", "recvfrom", "poll"}
    assert measured <= set(allowed)
    assert not {"setuid", "setrlimit", "sched_setaffinity", "mount"} & set(allowed)

    old = [(k, v) for k, v in lines if k not in {"SystemCallFilter", "SystemCallErrorNumber"}]
    old += [
        ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"),
    ]
    _, old_allowed, old_default = unit_seccomp.syscall_policy(old, groups)
    assert "setpriority" not in old_allowed
    assert old_default is None, "no errno: systemd kills the process with SIGSYS"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", ["pfxha-connector.service", "pfxha-zk-exporter.service"])
def test_systemd_unit_verifies(tmp_path: Path, name: str) -> None:
    # verify insists that ExecStart exists: point it at this checkout's pfxha.
    pfxha = Path(sys.executable).parent / "pfxha"
    if not pfxha.exists():
        pytest.skip("pfxha console script not installed in this venv")
    text = (DEPLOY / "systemd" / name).read_text()
    unit = tmp_path / name
    unit.write_text(text.replace("/opt/pfxha/venv/bin/pfxha", str(pfxha)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys are only warnings (exit 0), so any output is a failure too.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if name.removesuffix(".service") in line or "Unknown" in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems == []


def test_zk_exporter_unit_serves_where_prometheus_scrapes() -> None:
    """The unit runs `pfxha zk-exporter` on the port of the pfxha-zookeeper scrape job."""
    text = (DEPLOY / "systemd" / "pfxha-zk-exporter.service").read_text()
    start = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
    assert start is not None
    argv = start.group(1).split()
    assert argv[1] == "zk-exporter"
    port = argv[argv.index("--listen") + 1].rsplit(":", 1)[1]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "pfxha-zookeeper"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets
    assert all(t.rsplit(":", 1)[1] == port for t in targets)
    hosts = re.search(r"^Environment=PFXHA_ZOOKEEPER_HOSTS=(\S+)$", text, re.MULTILINE)
    assert hosts is not None
    from connector.zk_exporter import parse_servers

    assert len(parse_servers(hosts.group(1))) == 3


# Compose ---------------------------------------------------------------------------


def test_compose() -> None:
    doc = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = doc["services"]
    connectors = {n: s for n, s in services.items() if n.startswith("pfx")}
    zookeepers = {n: s for n, s in services.items() if n.startswith("zk")}
    assert len(connectors) == 3
    assert len(zookeepers) == 3
    assert sorted(s["environment"]["ZOO_MY_ID"] for s in zookeepers.values()) == ["1", "2", "3"]
    config = load_config(DEPLOY / "compose" / "connector.toml", environ={})
    assert {h.split(":")[0] for h in config.zookeeper.hosts.split(",")} == set(zookeepers)
    host_ports = set()
    for name, svc in connectors.items():
        assert svc["environment"]["PFXHA_CONNECTOR_NAME"] == name
        # Each connector advertises its liveness socket under its service name.
        mine = load_config(DEPLOY / "compose" / "connector.toml", environ=svc["environment"])
        zk = replace(mine.zookeeper, auth_user=None, auth_password_file=None)
        election = replace(mine, zookeeper=zk).election_config()
        assert election.liveness_addresses(lambda: "unused") == ("0.0.0.0", name)
        (mapping,) = svc["ports"]
        bind, host_port, container_port = mapping.split(":")
        assert bind == "127.0.0.1"
        assert int(container_port) == config.metrics.host_port[1] == DEFAULT_PORT
        host_ports.add(host_port)
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
        assert svc["stop_signal"] == "SIGTERM"
        mounts = [v.split(":")[1] for v in svc["volumes"]]
        assert "/etc/pfxha/connector.toml" in mounts
        secrets = {f"/run/secrets/{s}" for s in svc["secrets"]}
        assert config.zookeeper.auth_password_file in secrets
        assert {ca.auth_key_file for ca in config.cas} <= secrets
        assert {ca.certdb_password_file for ca in config.cas} <= secrets
    assert len(host_ports) == 3
    zk = next(iter(zookeepers.values()))["environment"]
    tick = int(zk["ZOO_TICK_TIME"])
    extra = dict(kv.split("=") for kv in zk["ZOO_CFG_EXTRA"].split())
    assert int(extra["minSessionTimeout"]) >= 2 * tick
    low, high = int(extra["minSessionTimeout"]), int(extra["maxSessionTimeout"])
    assert low <= config.zookeeper.session_timeout * 1000 <= high


def test_dockerfile() -> None:
    text = (DEPLOY / "compose" / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and line[0].isupper()]
    assert instructions[0] == "FROM"
    assert re.search(rf"^EXPOSE {DEFAULT_PORT}$", text, re.MULTILINE)
    assert re.search(r"^USER \d+", text, re.MULTILINE), "run as a non-root uid"
    assert "/healthz" in text
    # Everything the package needs is copied in (pyproject packages).
    for package in ("connector", "election", "chaos"):
        assert f"COPY {package} " in text


# Kubernetes ------------------------------------------------------------------------


def test_kubernetes_manifests() -> None:
    docs = _k8s_docs()
    sts, pdb, svc, mon = (
        docs["StatefulSet"],
        docs["PodDisruptionBudget"],
        docs["Service"],
        docs["ServiceMonitor"],
    )
    assert sts["spec"]["replicas"] == 3
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1, "a drain leaves a leader and a standby"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()

    (container,) = sts["spec"]["template"]["spec"]["containers"]
    port, liveness = container["ports"]
    assert port == {"name": "metrics", "containerPort": DEFAULT_PORT}
    assert liveness == {"name": "liveness", "containerPort": LIVENESS_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["PFXHA_CONNECTOR_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Standbys on other nodes must dial the pod, not its loopback.
    advertise = env["PFXHA_ZOOKEEPER_LIVENESS_ADVERTISE"]["valueFrom"]["fieldRef"]
    assert advertise["fieldPath"] == "status.podIP"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(DEFAULT_PORT)
    assert svc["spec"]["ports"][0]["port"] == DEFAULT_PORT
    (endpoint,) = mon["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    relabel = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
    assert relabel["job"] == "pfxha-connector", "the job name the alert rules expect"

    # Every file the config names is mounted from somewhere.
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    (_, config) = _configs()[-1]
    files = [config.zookeeper.auth_password_file]
    files += [p for ca in config.cas for p in (ca.auth_key_file, ca.certificate, ca.root)]
    files += [ca.certdb_password_file for ca in config.cas]
    for path in files:
        assert any(str(path).startswith(m.rstrip("/") + "/") for m in mounts), path
    assert "/etc/pfxha/connector.toml" in mounts
    secret_keys = set(docs["Secret"]["stringData"])
    for path in files:
        if str(path).startswith("/run/secrets/pfxha/"):
            assert Path(str(path)).name in secret_keys


def test_kustomize_builds() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: listing checked, build not run")
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout))
    assert kinds == sorted(
        [
            "ConfigMap",
            "Namespace",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "ServiceMonitor",
            "StatefulSet",
        ]
    )


# Grafana ---------------------------------------------------------------------------


def test_grafana_provisioning() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    dashboards = yaml.safe_load((prov / "dashboards.yml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    datasources = yaml.safe_load((prov / "datasources.yml").read_text())
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["jsonData"]["timeInterval"] == "5s"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["global"]["scrape_interval"] == ds["jsonData"]["timeInterval"]
