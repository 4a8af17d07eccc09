"""``pfxha bench ca-tls``: what mutual TLS to CFSSL costs per signature, side by side.

    pfxha bench ca-tls --signs 200 --json runs/bench/ca-tls.json

One CFSSL lab; its primary CA is served twice at once from the same key,
config and certdb: the lab's server (mutual TLS, the CN allow-list) and a
second ``cfssl serve`` on plain HTTP (started here, on loopback, stopped at
the end). The connector's own client (:class:`connector.ca.CfsslCA`, authsign,
response validation) signs prepared P-256 CSRs through each, in interleaved
blocks (plain, mTLS, mTLS, plain, ...) so both see the same load, and per
mode with a kept-alive connection (as the agent runs) and with a new
connection per signature (the handshake's cost, the worst case). Reported:
milliseconds per signature (p50, p99, mean) and the mTLS/plain ratio of the
means.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx

from chaos.bench._stats import summarize, write_result
from chaos.launch._process import ManagedProcess, free_port, port_open
from chaos.launch.cfssl import LAB_CLIENT, CfsslLab
from connector.ca import CfsslCA
from connector.ca._cfssl import tls_context
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key

__all__ = ["command", "run_ca_tls_bench"]

_MODES = ("plain", "mtls")
_BLOCK = 10


def _ca(spec: dict[str, Any], *, reuse: bool) -> CfsslCA:
    """The connector's client for ``spec``; ``reuse=False``: a new connection per call."""
    spec = {**spec, "reconcile": "off", "certdb_dsn": None, "certdb_password_file": None}
    if reuse:
        return CfsslCA.from_dict(spec)
    transport = httpx.HTTPTransport(
        verify=tls_context(spec), limits=httpx.Limits(max_keepalive_connections=0)
    )
    return CfsslCA.from_dict(spec, transport=transport)


def run_ca_tls_bench(signs: int, *, template: str = "user-auth") -> dict[str, Any]:
    profile = ProfileTemplate("bench", "CN={{UserName}}", [], KeyType.P256, template)
    csrs = [
        csr_for_profile(
            generate_key(KeyType.P256), profile, {"UserName": f"b{i}", "DeviceId": f"d{i}"}
        )
        for i in range(signs * 4)
    ]
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pfxha-bench-ca-tls-") as tmp:
        lab = CfsslLab(Path(tmp) / "cfssl")
        lab.start()
        port = free_port()
        plain = ManagedProcess(
            "cfssl-plain",
            lab.serve_argv("primary", port, mtls=False),
            log_path=Path(tmp) / "cfssl-plain.log",
            cwd=lab.run_dir / "primary",
        )
        try:
            plain.start()
            plain.wait_ready(
                lambda: port_open("127.0.0.1", port), timeout=20, what="plain cfssl serving"
            )
            mtls_spec = lab.ca("primary", LAB_CLIENT).as_dict()
            specs = {"mtls": mtls_spec, "plain": {**mtls_spec, "url": f"http://127.0.0.1:{port}"}}
            clients = {
                f"{mode}/{'reuse' if reuse else 'new'}": _ca(specs[mode], reuse=reuse)
                for mode in _MODES
                for reuse in (True, False)
            }
            for name, ca in clients.items():  # warm up: first connection, imports
                ca.issue(csrs[0], template, f"warm-{name}", timeout=10.0)
                samples[name] = []
            order = list(clients)
            index = 0
            for block in range(0, signs, _BLOCK):
                for name in order if (block // _BLOCK) % 2 == 0 else reversed(order):
                    ca = clients[name]
                    for _ in range(min(_BLOCK, signs - block)):
                        csr = csrs[index % len(csrs)]
                        index += 1
                        started = time.perf_counter()
                        ca.issue(csr, template, f"bench-{index}", timeout=10.0)
                        samples[name].append(time.perf_counter() - started)
            for ca in clients.values():
                ca.close()
        finally:
            plain.stop(grace=5)
            lab.stop()
    per_mode = {name: summarize([s * 1000 for s in values], 3) for name, values in samples.items()}

    def ratio(connection: str) -> float:
        mtls, base = per_mode[f"mtls/{connection}"]["mean"], per_mode[f"plain/{connection}"]["mean"]
        return round(float(mtls or 0.0) / float(base or 1.0), 3)

    return {
        "signs_per_mode": signs,
        "ms_per_sign": per_mode,
        "mtls_over_plain": {"kept_alive": ratio("reuse"), "new_connection": ratio("new")},
        "cores": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


@click.command("ca-tls")
@click.option("--signs", default=200, show_default=True, help="Signatures per mode.")
@click.option("--template", default="user-auth", show_default=True, help="CFSSL signing profile.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None)
def command(signs: int, template: str, json_path: Path | None) -> None:
    """Per-signature cost of mutual TLS to CFSSL against plain HTTP, side by side."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if signs < 1:
        raise click.BadParameter("must be >= 1", param_hint="--signs")
    result = run_ca_tls_bench(signs, template=template)
    for name, summary in result["ms_per_sign"].items():
        click.echo(
            f"{name:12} p50 {summary['p50']} ms  p99 {summary['p99']} ms  "
            f"mean {summary['mean']} ms  (n={summary['n']})"
        )
    ratios = result["mtls_over_plain"]
    click.echo(
        f"mTLS / plain (means): kept-alive {ratios['kept_alive']}, "
        f"new connection per sign {ratios['new_connection']}"
    )
    if json_path is not None:
        click.echo(f"wrote {write_result(json_path, result)}")
