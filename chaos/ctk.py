"""Chaos Toolkit actions and probes for a lab started with ``pfxha lab up``.

The experiments in ``chaos/experiments/`` call these as Python providers::

    {"type": "python", "module": "chaos.ctk", "func": "kill_active_connector",
     "arguments": {"lab_dir": "${lab_dir}"}}

Faults go through the lab supervisor's control socket (it owns the
processes); probes read ZooKeeper and the service from the outside, like the
drill's observer. Every function takes ``lab_dir`` (default ``runs/lab``).

Probes
    ``leader(lab_dir)`` -> ``{"name", "epoch"}`` from ZooKeeper;
    ``exactly_one_active(lab_dir)`` -> bool: one active connector at the
    service, and it is ZooKeeper's leader;
    ``seconds_to_certificate(lab_dir, timeout)`` -> float: enroll a new
    device and time until the service holds its certificate (``timeout`` + 1
    when it never arrives, so a tolerance range fails cleanly);
    ``issuer_of_latest_certificate(lab_dir)`` -> the CA name of the newest one.
Actions
    ``kill_active_connector``, ``kill_ca``, ``heal`` (the rollback: restart
    whatever connector or CA is down).
"""

from __future__ import annotations

import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chaos.checkers.state import ServiceDb
from chaos.lab.seed import WORKLOAD_GROUP
from chaos.lab.state import read_state
from chaos.lab.supervisor import control

__all__ = [
    "exactly_one_active",
    "heal",
    "issuer_of_latest_certificate",
    "kill_active_connector",
    "kill_ca",
    "leader",
    "seconds_to_certificate",
]

DEFAULT_LAB = "runs/lab"


def _lab(lab_dir: str) -> tuple[Path, dict[str, Any]]:
    path = Path(lab_dir).resolve()
    state = read_state(path)
    if state is None or state.status != "up":
        raise RuntimeError(f"no running lab in {path} (start one with: pfxha lab up --dir {path})")
    return path, state.endpoints


def _admin(path: Path, endpoints: dict[str, Any]) -> httpx.Client:
    token_file = path / "service" / "admin-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ca = endpoints.get("service_ca")  # the secure lab's self-signed service certificate
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
    return httpx.Client(
        base_url=str(endpoints["service"]), headers=headers, timeout=10.0, verify=verify
    )


def _command(lab_dir: str, command: dict[str, Any]) -> dict[str, Any]:
    path, _ = _lab(lab_dir)
    answer = control(path, command)
    if not answer.get("ok"):
        raise RuntimeError(f"lab refused {command}: {answer.get('error')}")
    return answer


# -- probes ----------------------------------------------------------------------------


def leader(lab_dir: str = DEFAULT_LAB) -> dict[str, Any]:
    from election import read_cluster_status

    _, endpoints = _lab(lab_dir)
    status = read_cluster_status(str(endpoints["zookeeper"]), str(endpoints["cluster"]))
    if status.leader is None:
        return {"name": None, "epoch": status.epoch}
    return {"name": status.leader.name, "epoch": status.leader.epoch}


def exactly_one_active(lab_dir: str = DEFAULT_LAB, timeout: float = 10.0) -> bool:
    """One active connector at the service, the same one ZooKeeper names (waits up to timeout)."""
    path, endpoints = _lab(lab_dir)
    deadline = time.monotonic() + timeout
    with _admin(path, endpoints) as client:
        while True:
            rows = client.get("/api/v1/read/connectors").raise_for_status().json()
            active = [r["name"] for r in rows if r["role"] == "active"]
            if len(active) > 1:
                return False
            if active and active == [leader(lab_dir)["name"]]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def seconds_to_certificate(lab_dir: str = DEFAULT_LAB, timeout: float = 10.0) -> float:
    """Enroll one device and time until the service holds a certificate for it."""
    path, endpoints = _lab(lab_dir)
    db = ServiceDb(Path(endpoints["service_db"]))
    tag = uuid.uuid4().hex[:8]
    user, device = f"ctk-user-{tag}", f"ctk-dev-{tag}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    start = time.monotonic()
    with _admin(path, endpoints) as client:
        body = {"id": user, "name": user, "upn": f"{user}@lab", "email": f"{user}@lab"}
        client.post("/api/v1/admin/users", json=body).raise_for_status()
        client.post(
            f"/api/v1/admin/groups/{WORKLOAD_GROUP}/members", json={"user_id": user}
        ).raise_for_status()
        client.post(
            "/api/v1/admin/devices",
            json={"id": device, "user_id": user, "public_key_pem": public_pem},
        ).raise_for_status()
    while time.monotonic() - start < timeout:
        rows = db.rows(
            "SELECT 1 FROM requests WHERE device_id = ? AND serial IS NOT NULL", (device,)
        )
        if rows:
            return round(time.monotonic() - start, 3)
        time.sleep(0.05)
    return timeout + 1.0


def issuer_of_latest_certificate(lab_dir: str = DEFAULT_LAB) -> str | None:
    _, endpoints = _lab(lab_dir)
    rows = ServiceDb(Path(endpoints["service_db"])).rows(
        "SELECT ca_name FROM requests WHERE issued_at IS NOT NULL ORDER BY issued_at DESC LIMIT 1"
    )
    return str(rows[0]["ca_name"]) if rows else None


# -- actions ---------------------------------------------------------------------------


def kill_active_connector(lab_dir: str = DEFAULT_LAB) -> dict[str, Any]:
    """SIGKILL the connector ZooKeeper names as leader."""
    return _command(lab_dir, {"op": "kill-connector", "name": "leader"})


def kill_ca(lab_dir: str = DEFAULT_LAB, name: str = "primary") -> dict[str, Any]:
    return _command(lab_dir, {"op": "kill-ca", "name": name})


def heal(lab_dir: str = DEFAULT_LAB) -> dict[str, Any]:
    """Rollback: start every connector and CA that is down, resume paused ones."""
    return _command(lab_dir, {"op": "heal"})
