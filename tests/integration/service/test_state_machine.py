"""Property-based test of the request/revocation state machine (hypothesis stateful).

Random interleavings of admin changes, every revocation-table event, connector
work (including a takeover by a new epoch with reconciliation), renewals and
device check-ins, run in-process against the real app and database. After
every step the invariants a drill checks must hold.
"""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from chaos.service.app import ServiceConfig, create_app
from connector.service_client._models import request_from_json
from tests.integration.service.helpers import MiniCA, issue_for, new_key, public_pem

_KEYS = Path(tempfile.mkdtemp(prefix="svc-sm-keys-"))
# Device management keys made once: RSA generation would dominate the run.
_DEVICE_KEYS = {d: new_key("rsa2048") for d in ("d0", "d1", "d2")}
USERS = ["u0", "u1"]
GROUPS = ["g0", "g1"]
PROFILES = ["p0", "p1"]
DEVICES = {"d0": "u0", "d1": "u0", "d2": "u1"}
EVENTS = [
    "retire-user",
    "retire-admin",
    "block",
    "delete-device",
    "leave-group",
    "delete-profile",
    "remove-assignment",
    "revoke-all-of-user",
]


class ServiceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="svc-sm-"))
        app = create_app(
            ServiceConfig(db_path=self.dir / "s.db", kra_dir=_KEYS, renewal_interval_s=0)
        )
        self.http = TestClient(app)
        self.http.__enter__()
        self.db = sqlite3.connect(self.dir / "s.db")
        self.db.row_factory = sqlite3.Row
        self.ca = MiniCA()
        self.kra = self._kra()
        self.epoch = 1
        self.post("/api/v1/connector/register", {"name": "c1", "epoch": 1})
        for user in USERS:
            self.post(
                "/api/v1/admin/users",
                {"id": user, "name": user, "upn": f"{user}@x", "email": f"{user}@x"},
            )
        for group in GROUPS:
            self.post("/api/v1/admin/groups", {"id": group, "name": group})
        self.devices: dict[str, dict[str, str]] = {}
        self.profiles: set[str] = set()

    def _kra(self) -> Any:
        from cryptography import x509

        pem = self.http.get("/api/v1/connector/kra-certificate").json()["certificate_pem"]
        return x509.load_pem_x509_certificate(pem.encode())

    def post(
        self, path: str, body: dict[str, Any] | None = None, *, allowed: tuple[int, ...] = ()
    ) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code < 500, f"{path}: {response.status_code} {response.text}"
        assert response.status_code < 300 or response.status_code in allowed, (
            f"{path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def teardown(self) -> None:
        self.http.__exit__(None, None, None)
        self.db.close()

    @initialize()
    def targeted_world(self) -> None:
        """Start with every device targeted: the events then have something to take away."""
        for profile in PROFILES:
            self.create_profile(profile)
        for user, group in (("u0", "g0"), ("u1", "g1")):
            self.join(group, user)
        for device in sorted(DEVICES):
            self.enroll_device(device)
        for profile, group in (("p0", "g0"), ("p1", "g1"), ("p0", "g1")):
            self.assign(profile, group)

    # -- admin ------------------------------------------------------------------

    @rule(profile=st.sampled_from(PROFILES))
    def create_profile(self, profile: str) -> None:
        self.post("/api/v1/admin/profiles", {"id": profile, "key_type": "p256"}, allowed=(409,))
        self.profiles.add(profile)

    @rule(group=st.sampled_from(GROUPS), user=st.sampled_from(USERS))
    def join(self, group: str, user: str) -> None:
        self.post(f"/api/v1/admin/groups/{group}/members", {"user_id": user})

    @rule(device=st.sampled_from(sorted(DEVICES)))
    def enroll_device(self, device: str) -> None:
        made = self.post(
            "/api/v1/admin/devices", {"id": device, "user_id": DEVICES[device]}, allowed=(409,)
        )
        if "management_key_pem" in made:
            self.devices[device] = made

    @rule(profile=st.sampled_from(PROFILES), group=st.sampled_from(GROUPS))
    def assign(self, profile: str, group: str) -> None:
        self.post(
            "/api/v1/admin/assignments",
            {"id": f"{profile}-{group}", "profile_id": profile, "group_id": group},
            allowed=(404, 409),
        )

    @rule(
        event=st.sampled_from(EVENTS),
        device=st.sampled_from(sorted(DEVICES)),
        user=st.sampled_from(USERS),
        group=st.sampled_from(GROUPS),
        profile=st.sampled_from(PROFILES),
    )
    def revocation_event(
        self, event: str, device: str, user: str, group: str, profile: str
    ) -> None:
        body = {
            "retire-user": {"device_id": device},
            "retire-admin": {"device_id": device},
            "block": {"device_id": device},
            "delete-device": {"device_id": device},
            "leave-group": {"group_id": group, "user_id": user},
            "delete-profile": {"profile_id": profile},
            "remove-assignment": {"assignment_id": f"{profile}-{group}"},
            "revoke-all-of-user": {"user_id": user},
        }[event]
        # 404: that object is gone; 400: n/a in standalone mode.
        self.post(f"/api/v1/admin/actions/{event}", body, allowed=(400, 404))

    @rule(mode=st.sampled_from(["hybrid", "standalone"]), odds=st.integers(0, 2))
    def switch_mode(self, mode: str, odds: int) -> None:
        if odds:
            return
        self.http.put("/api/v1/admin/mode", json={"mode": mode})

    @rule(days=st.integers(min_value=0, max_value=12))
    def renewal_scan(self, days: int) -> None:
        as_of = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        self.post("/api/v1/admin/renewal-scan", {"as_of": as_of.isoformat()})

    # -- connector ---------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any], *, allowed: tuple[int, ...] = ()) -> Any:
        return self.post(
            f"/api/v1/connector{path}",
            {"name": f"c{self.epoch}", "epoch": self.epoch, **body},
            allowed=allowed,
        )

    @rule(take=st.integers(min_value=1, max_value=8), skip_upload=st.integers(0, 3))
    def connector_work(self, take: int, skip_upload: int) -> None:
        upload = skip_upload != 0
        batch = self.call("/requests/poll", {"max_items": take, "wait_s": 0})["requests"]
        for item in batch:
            req = request_from_json(item)
            issued = issue_for(req, self.ca, self.kra)
            self.call(
                f"/requests/{req.id}/intent",
                {"public_key_pem": public_pem(issued.key)},
                allowed=(400,),
            )
            if upload:
                self.call(
                    f"/requests/{req.id}/result",
                    {
                        "envelope_b64": base64.b64encode(issued.envelope).decode(),
                        "serial": str(issued.cert.serial_number),
                        "ca_name": self.ca.name,
                    },
                    allowed=(400,),
                )

    @rule(odds=st.integers(0, 2))
    def takeover(self, odds: int) -> None:
        """A new leader: registers a higher epoch, reconciles stale intents, re-queues them."""
        if odds:
            return
        old = self.epoch
        self.epoch += 1
        self.post("/api/v1/connector/register", {"name": f"c{self.epoch}", "epoch": self.epoch})
        intents = self.call("/intents/stale", {})["intents"]
        assert all(i["epoch"] < self.epoch for i in intents)
        for intent in intents:
            self.call(
                f"/requests/{intent['request_id']}/fail",
                {"reason": "reconciled", "retryable": True},
            )
        # The deposed epoch is refused and changes nothing.
        refused = self.http.post(
            "/api/v1/connector/requests/poll", json={"name": f"c{old}", "epoch": old}
        )
        assert refused.status_code == 409

    @rule()
    def confirm_revocations(self) -> None:
        for task in self.call("/revocations/poll", {"max_items": 500, "wait_s": 0})["revocations"]:
            self.call(f"/revocations/{task['id']}/confirm", {})

    # -- devices ---------------------------------------------------------------------

    @rule(device=st.sampled_from(sorted(DEVICES)), skip_install=st.integers(0, 3))
    def device_sync(self, device: str, skip_install: int) -> None:
        install = skip_install != 0
        if device not in self.devices:
            return
        answer = self.post(f"/api/v1/devices/{device}/checkin")
        for delivery in answer["deliveries"]:
            row = self.db.execute(
                "SELECT * FROM requests WHERE id = ?", (delivery["request_id"],)
            ).fetchone()
            assert row["cancelled"] is None
            assert row["revocation"] is None
            if install:
                self.post(
                    f"/api/v1/devices/{device}/report",
                    {"request_id": delivery["request_id"], "status": "installed"},
                )
        for deletion in answer["deletions"]:
            self.post(
                f"/api/v1/devices/{device}/report",
                {"request_id": deletion["request_id"], "status": "deleted"},
            )

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def at_most_one_installed_certificate_per_slot(self) -> None:
        rows = self.db.execute(
            "SELECT device_id, profile_id, COUNT(*) AS n FROM requests "
            "WHERE state = 'installed' AND revocation IS NULL GROUP BY device_id, profile_id"
        ).fetchall()
        assert all(r["n"] == 1 for r in rows), [dict(r) for r in rows]

    @invariant()
    def at_most_one_open_request_per_slot_besides_a_renewal(self) -> None:
        rows = self.db.execute(
            "SELECT device_id, profile_id, COUNT(*) AS n FROM requests WHERE cancelled IS NULL "
            "AND revocation IS NULL AND state != 'failed' GROUP BY device_id, profile_id"
        ).fetchall()
        assert all(r["n"] <= 2 for r in rows), [dict(r) for r in rows]

    @invariant()
    def cancelled_certificates_are_revoked(self) -> None:
        bad = self.db.execute(
            "SELECT id FROM requests WHERE serial IS NOT NULL AND cancelled IS NOT NULL "
            "AND revocation IS NULL"
        ).fetchall()
        assert bad == []

    @invariant()
    def revocations_name_the_issued_certificate(self) -> None:
        bad = self.db.execute(
            "SELECT v.id FROM revocations v JOIN requests r ON r.id = v.request_id "
            "WHERE v.serial != r.serial OR v.ca_name != r.ca_name"
        ).fetchall()
        assert bad == []

    @invariant()
    def untargeted_slots_have_nothing_live(self) -> None:
        targeted = {
            (r[0], r[1])
            for r in self.db.execute(
                "SELECT DISTINCT d.id, a.profile_id FROM devices d "
                "JOIN users u ON u.id = d.user_id JOIN memberships m ON m.user_id = u.id "
                "JOIN assignments a ON a.group_id = m.group_id "
                "JOIN profiles p ON p.id = a.profile_id "
                "WHERE d.state = 'active' AND u.state = 'active'"
            )
        }
        live = self.db.execute(
            "SELECT device_id, profile_id FROM requests WHERE cancelled IS NULL "
            "AND revocation IS NULL AND state != 'failed'"
        ).fetchall()
        assert all((r[0], r[1]) in targeted for r in live)


ServiceMachine.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
test_service_state_machine = pytest.mark.filterwarnings("ignore::DeprecationWarning")(
    ServiceMachine.TestCase
)
