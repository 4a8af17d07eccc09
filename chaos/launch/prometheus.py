"""Debian's Prometheus on a free loopback port, scraping the lab with the repo's rules.

    prom = PrometheusServer(run_dir, connectors=["127.0.0.1:9464", "127.0.0.1:9465"],
                            service=["127.0.0.1:8443"], service_tls=ScrapeTLS(ca_file=ca_pem))
    prom.start()                                  # waits for /-/ready
    prom.wait_targets_up(count=2, timeout=20)     # first scrapes done
    prom.value('sum(pfxha_connector_role{pfxha_connector_role="leader"})')   # -> 1.0
    prom.wait_value('sum(pfxha_connector_role{pfxha_connector_role="leader"})',
                    lambda v: v == 1, timeout=15)
    prom.firing()                                 # names of alerts firing now
    prom.set_targets("pfxha-connector", [...])    # file_sd: no restart, no reload
    prom.stop()

The generated configuration scrapes the connectors as job ``pfxha-connector``
(the name ``deploy/prometheus`` rules expect) with target label ``cluster``,
optionally the stand-in service as job ``pfxha-service`` and any other jobs,
and loads ``deploy/prometheus/recording.yml`` and ``alerts.yml`` unchanged.
Targets live in file_sd JSON files under the run directory, so the lab can add
or remove connectors while Prometheus runs. Scrape and rule evaluation default
to 1 s, so a failover is visible within a second or two.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chaos.launch._process import LaunchError, ManagedProcess, free_port, wait_for

__all__ = [
    "CONNECTOR_JOB",
    "RULES_DIR",
    "RULE_FILES",
    "SERVICE_JOB",
    "PrometheusQueryError",
    "PrometheusServer",
    "Sample",
    "ScrapeTLS",
]

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = ("recording.yml", "alerts.yml")
CONNECTOR_JOB = "pfxha-connector"
SERVICE_JOB = "pfxha-service"


class PrometheusQueryError(RuntimeError):
    """Prometheus refused a query (bad PromQL) or answered something unexpected."""


@dataclass(frozen=True)
class ScrapeTLS:
    """Scrape a job over HTTPS: the CA that signed its server certificate, and a
    client certificate and key when it asks for one (mutual TLS)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def config(self) -> dict[str, str]:
        out = {"ca_file": str(self.ca_file)}
        if self.cert_file is not None and self.key_file is not None:
            out["cert_file"] = str(self.cert_file)
            out["key_file"] = str(self.key_file)
        return out


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusServer:
    """One Prometheus process with its config, data and log under ``run_dir/prometheus``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        connectors: Sequence[str] = (),
        service: Sequence[str] = (),
        service_tls: ScrapeTLS | None = None,
        extra_jobs: Mapping[str, Sequence[str]] | None = None,
        cluster: str = "lab",
        scrape_interval: float = 1.0,
        evaluation_interval: float = 1.0,
        rules_dir: Path = RULES_DIR,
        runbook_base_url: str | None = None,
        binary: str = "prometheus",
        host: str = "127.0.0.1",
        port: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if scrape_interval <= 0 or evaluation_interval <= 0:
            raise ValueError("scrape_interval and evaluation_interval must be > 0 seconds")
        self.dir = run_dir / "prometheus"
        self.cluster = cluster
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rules_dir = rules_dir
        self.runbook_base_url = runbook_base_url
        self.binary = binary
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._jobs: dict[str, list[str]] = {CONNECTOR_JOB: list(connectors)}
        if service:
            self._jobs[SERVICE_JOB] = list(service)
        for job, targets in (extra_jobs or {}).items():
            self._jobs[job] = list(targets)
        self._tls: dict[str, ScrapeTLS] = {SERVICE_JOB: service_tls} if service_tls else {}
        self._transport = transport
        self._client: httpx.Client | None = None
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.dir / "prometheus.yml"

    # Life cycle ----------------------------------------------------------

    def write_config(self) -> Path:
        """Write prometheus.yml and one file_sd file per job; returns the config path."""
        (self.dir / "targets").mkdir(parents=True, exist_ok=True)
        for job, targets in self._jobs.items():
            self.set_targets(job, targets)
        # JSON is YAML: no YAML writer needed, and every path is quoted safely.
        config = {
            "global": {
                "scrape_interval": _duration(self.scrape_interval),
                "scrape_timeout": _duration(min(self.scrape_interval, 10.0) * 0.8),
                "evaluation_interval": _duration(self.evaluation_interval),
                **self._external_labels(),
            },
            "rule_files": [str(self.rules_dir / name) for name in RULE_FILES],
            "scrape_configs": [self._scrape_config(job) for job in self._jobs],
        }
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        return self.config_path

    def set_targets(self, job: str, targets: Sequence[str]) -> None:
        """Replace a job's targets; Prometheus notices the file change by itself."""
        self._jobs[job] = list(targets)
        path = self._targets_file(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        groups = [{"targets": list(targets), "labels": {"cluster": self.cluster}}]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups) + "\n")
        os.replace(tmp, path)  # atomic: Prometheus never reads half a file

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def start(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.running():
            raise LaunchError(f"prometheus already running (pid {self.process.pid})")
        self.write_config()
        self.process = ManagedProcess(
            "prometheus", self.argv(), log_path=self.dir / "prometheus.log"
        )
        self.process.start()
        process = self.process

        def ready() -> bool:
            if not process.running():
                raise LaunchError(f"prometheus exited at start:\n{process.tail()}")
            try:
                return self._http().get("/-/ready").status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, timeout=timeout, what=f"prometheus ready at {self.url}", interval=0.1)
        except LaunchError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)
        if self._client is not None:
            self._client.close()
            self._client = None

    def reload(self) -> None:
        """Re-read the config and rule files (after editing the rules during a drill)."""
        self._http().post("/-/reload").raise_for_status()

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Queries ---------------------------------------------------------------

    def query(self, promql: str, *, at: float | None = None) -> list[Sample]:
        """An instant query; a scalar result comes back as one sample without labels."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        data = self._api("/api/v1/query", params)
        kind, result = data["resultType"], data["result"]
        if kind == "vector":
            return [Sample(dict(r["metric"]), float(r["value"][1])) for r in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        raise PrometheusQueryError(f"unexpected result type {kind!r} for {promql!r}")

    def value(self, promql: str) -> float | None:
        """The single value of ``promql`` now, or None when the result is empty."""
        samples = self.query(promql)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusQueryError(
                f"{promql!r} returned {len(samples)} series; aggregate it to one"
            )
        return samples[0].value

    def wait_value(
        self,
        promql: str,
        predicate: Callable[[float | None], bool],
        *,
        timeout: float,
        interval: float = 0.2,
    ) -> float | None:
        """Poll ``promql`` until ``predicate(value)`` holds; returns that value."""
        seen: list[float | None] = []

        def check() -> bool:
            seen.append(self.value(promql))
            return predicate(seen[-1])

        try:
            wait_for(check, timeout=timeout, what=repr(promql), interval=interval)
        except LaunchError as exc:
            last = seen[-1] if seen else None
            raise LaunchError(f"timed out after {timeout:.1f}s: {promql!r} was {last}") from exc
        return seen[-1]

    def targets(self) -> list[dict[str, Any]]:
        data = self._api("/api/v1/targets", {"state": "active"})
        return list(data["activeTargets"])

    def wait_targets_up(
        self, job: str = CONNECTOR_JOB, *, count: int | None = None, timeout: float = 30.0
    ) -> None:
        """Wait until ``count`` targets of ``job`` (default: all of them) were scraped OK."""
        want = count if count is not None else len(self._jobs.get(job, []))

        def up() -> bool:
            mine = [t for t in self.targets() if t["labels"].get("job") == job]
            return sum(1 for t in mine if t["health"] == "up") >= want

        wait_for(up, timeout=timeout, what=f"{want} {job} target(s) up", interval=0.2)

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now, as /api/v1/alerts returns them."""
        return list(self._api("/api/v1/alerts", {})["alerts"])

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.alerts() if a["state"] == "firing"}

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self._api("/api/v1/rules", {})["groups"])

    # Internals -------------------------------------------------------------

    def _external_labels(self) -> dict[str, Any]:
        # The alerts' runbook_url is <runbook_base_url>/monitoring.md#<alert> when set.
        if self.runbook_base_url is None:
            return {}
        return {"external_labels": {"runbook_base_url": self.runbook_base_url}}

    def _scrape_config(self, job: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "job_name": job,
            "file_sd_configs": [
                {"files": [str(self._targets_file(job))], "refresh_interval": "5s"}
            ],
        }
        tls = self._tls.get(job)
        if tls is not None:
            config["scheme"] = "https"
            config["tls_config"] = tls.config()
        return config

    def _targets_file(self, job: str) -> Path:
        return self.dir / "targets" / f"{job}.json"

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=5.0, transport=self._transport)
        return self._client

    def _api(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        response = self._http().get(path, params=params)
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusQueryError(f"{path}: HTTP {response.status_code}, not JSON") from exc
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{path} {dict(params)}: {body.get('error', body)}")
        data: dict[str, Any] = body["data"]
        return data


def _duration(seconds: float) -> str:
    """Prometheus duration syntax; milliseconds keep sub-second intervals exact."""
    return f"{round(seconds * 1000)}ms"
