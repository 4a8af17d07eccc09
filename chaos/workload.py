"""The drill's steady workload: devices enrolling and checking in, admins revoking.

    workload = Workload(history, admin_client, service_db, root_certificate,
                        group="drill", enroll_per_s=4.0, revoke_every_s=3.0)
    workload.start()          # background threads (check-ins: a pool, checkin_workers)
    workload.enroll_now(2)    # a burst, e.g. right after a fault (the failover probe)
    ...
    workload.stop()           # stops creating work; devices keep checking in
    workload.drain(timeout=30)  # until every device has what the service holds for it

Users have one to three devices: every ``more_devices_every``-th enrollment
gives an existing user (still in the group, fewer than ``max_devices`` devices)
another device, so a user-scoped certificate reaches several devices and a
device enrolled later. Device-level admin actions prefer a device of a user
with several active devices (a lost phone: the user's shared certificate is
rolled over for the others).

Every operation goes into the history as invoke / ok / fail / info. Each
device opens the PFX it receives the way a device would and reports it
(:mod:`chaos._workload_device`). Device keys stay in this process; they are
never written to the history.

Device management keys come from a small pool of RSA keys reused across
devices: the service issues each device its own management certificate, so
what is checked (open with the device's key, chain to the root) is
unchanged, and the lab machine is spared an RSA key generation per device.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import tenacity
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chaos._workload_device import Device, check_in, checkin_rounds
from chaos.checkers.ops import ADMIN, ENROLL, REVOKE, device_process
from chaos.history import History

__all__ = ["LOST_ENROLLMENT_LOOKUP", "REVOCATION_ACTIONS", "Device", "Workload"]


def _not_there_yet(exc: BaseException) -> bool:
    """A lookup worth repeating: 404 (the service may still be making the device, its
    key and certificate, when the client sees the connection go) or no answer."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 404
    return isinstance(exc, httpx.TransportError)


# How long to look for a device whose enrollment answer was lost.
LOST_ENROLLMENT_LOOKUP = tenacity.Retrying(
    retry=tenacity.retry_if_exception(_not_there_yet),
    stop=tenacity.stop_after_delay(5.0),
    wait=tenacity.wait_fixed(0.2),
    reraise=True,
)

# One admin action per row of the seed's revocation table that targets one device
# (profile- and assignment-wide actions would revoke the whole lab at once).
REVOCATION_ACTIONS = ("retire-user", "retire-admin", "block", "delete-device", "leave-group")


class Workload:
    """Background enrollments, check-ins and revocation events against the service."""

    def __init__(
        self,
        history: History,
        client: httpx.Client,
        requests_of: Callable[[str], list[str]],
        root: x509.Certificate,
        *,
        group: str,
        enroll_per_s: float = 4.0,
        checkin_interval_s: float = 0.2,
        revoke_every_s: float = 3.0,
        device_keys: int = 4,
        run_id: str = "",
        seed: int | None = None,
        devices_due: Callable[[], set[str]] | None = None,
        more_devices_every: int = 3,
        max_devices: int = 3,
        checkin_workers: int = 4,
        lost_enrollment_lookup: tenacity.Retrying = LOST_ENROLLMENT_LOOKUP,
    ) -> None:
        self.history = history
        self.client = client
        self.requests_of = requests_of
        # Which devices the service has something for (a certificate to collect,
        # one to delete); without it every device with an open request checks in.
        self.devices_due = devices_due
        self.root = root
        self.group = group
        self.enroll_per_s = enroll_per_s
        self.checkin_interval_s = checkin_interval_s
        # Devices checking in side by side: one thread fell behind the service under
        # load (a 600 s drill at load 30-40 collected 15-22 PFX a minute and ended with
        # hundreds issued, uploaded and never collected).
        self.checkin_workers = max(1, checkin_workers)
        self.revoke_every_s = revoke_every_s
        self._lost_enrollment_lookup = lost_enrollment_lookup
        self.run_id = run_id or f"{int(time.time()) % 100000}"
        self._rng = random.Random(seed)
        self._keys = [
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            for _ in range(device_keys)
        ]
        self._counter = itertools.count(1)
        self._enrollments = itertools.count(1)
        self.more_devices_every = more_devices_every
        self.max_devices = max_devices
        self._left: set[str] = set()  # users who left the group
        self._lock = threading.Lock()
        self.devices: dict[str, Device] = {}
        self._stop_work = threading.Event()
        self._running = threading.Event()
        self._running.set()
        # Enrollments and admin actions under way; pause() waits for them to land.
        self._busy = 0
        self._idle = threading.Condition()
        self._stop_all = threading.Event()
        self._threads: list[threading.Thread] = []
        self._actions = itertools.cycle(REVOCATION_ACTIONS)
        self._prepared: list[tuple[int, str]] = []

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        for name, target in (
            ("enroll", self._enroll_loop),
            ("checkin", self._checkin_loop),
            ("admin", self._admin_loop),
        ):
            thread = threading.Thread(target=target, name=f"workload-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop enrolling and revoking; check-ins continue until :meth:`close`."""
        self._stop_work.set()

    def pause(self, timeout: float = 30.0) -> bool:
        """Hold enrollments and revocations (check-ins go on), e.g. to drain the backlog.

        Returns once an enrollment or admin action already under way has
        landed (False if that took longer than ``timeout``): whoever drains
        after a pause must see all the work the workload made, or a request
        created just after the drain looked would seem lost.
        """
        with self._idle:
            self._running.clear()
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def resume(self) -> None:
        with self._idle:
            self._running.set()

    def _begin(self) -> bool:
        """Start one enrollment or admin action, unless paused."""
        with self._idle:
            if not self._running.is_set():
                return False
            self._busy += 1
            return True

    def _end(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def close(self) -> None:
        self._stop_work.set()
        self._stop_all.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def pending_devices(self) -> list[Device]:
        """Devices the service has something for (or, without ``devices_due``, still owed one)."""
        if self.devices_due is not None:
            due = self.devices_due()
            with self._lock:
                return [d for d in self.devices.values() if d.id in due]
        with self._lock:
            devices = [d for d in self.devices.values() if not d.retired]
        return [d for d in devices if set(d.requests) - d.installed]

    # -- operations ----------------------------------------------------------------

    def enroll_now(self, count: int = 1) -> list[str]:
        return [d for d in (self.enroll_one() for _ in range(count)) if d]

    def prepare(self, count: int) -> None:
        """Create users (already group members) whose device enrollment is one call away.

        The drill prepares these before a fault and enrolls them right after it
        (:meth:`enroll_prepared`), so new work reaches the service within one
        request of the fault.
        """
        for _ in range(count):
            slot = self._new_user()
            if slot is not None:
                with self._lock:
                    self._prepared.append(slot)

    def enroll_prepared(self) -> list[str]:
        """Enroll every prepared device at once, in parallel."""
        with self._lock:
            slots, self._prepared = self._prepared, []
        done: list[str] = []
        threads = [
            threading.Thread(target=lambda s=slot: done.append(self._enroll_device(*s) or ""))
            for slot in slots
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return [d for d in done if d]

    def enroll_one(self) -> str | None:
        """A new user with a device, or now and then another device of an existing user."""
        if self.more_devices_every > 0 and next(self._enrollments) % self.more_devices_every == 0:
            user = self._user_for_another_device()
            if user is not None:
                return self._enroll_device(next(self._counter), user)
        slot = self._new_user()
        return self._enroll_device(*slot) if slot is not None else None

    def _user_for_another_device(self) -> str | None:
        count = self.users_with_devices()
        left = self._left
        eligible = sorted(u for u, n in count.items() if n < self.max_devices and u not in left)
        return self._rng.choice(eligible) if eligible else None

    def users_with_devices(self) -> dict[str, int]:
        """user -> how many devices the workload enrolled for them."""
        with self._lock:
            out: dict[str, int] = {}
            for device in self.devices.values():
                out[device.user] = out.get(device.user, 0) + 1
            return out

    def _new_user(self) -> tuple[int, str] | None:
        n = next(self._counter)
        user_id = f"user-{self.run_id}-{n}"
        op = self.history.invoke(ADMIN, "add-user", {"user": user_id})
        try:
            self._post(
                "/api/v1/admin/users",
                {"id": user_id, "name": f"User {n}", "upn": f"{user_id}@lab",
                 "email": f"{user_id}@lab"},
            )  # fmt: skip
            self._post(f"/api/v1/admin/groups/{self.group}/members", {"user_id": user_id})
        except httpx.HTTPError as exc:
            self.history.complete(op, "fail", {"user": user_id, "error": str(exc)})
            return None
        self.history.complete(op, "ok", {"user": user_id})
        return n, user_id

    def _enroll_device(self, n: int, user_id: str) -> str | None:
        device_id = f"dev-{self.run_id}-{n}"
        process = device_process(device_id)
        op = self.history.invoke(process, ENROLL, {"device": device_id, "user": user_id})
        key = self._keys[n % len(self._keys)]
        public_pem = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        recovered: dict[str, str] = {}
        try:
            try:
                body = self._post(
                    "/api/v1/admin/devices",
                    {"id": device_id, "user_id": user_id, "public_key_pem": public_pem},
                )
            except httpx.TransportError as exc:
                # The answer was lost, not necessarily the enrollment: a device the
                # service made must check in, or its certificates are never collected.
                body = self._device_made(device_id, public_pem)
                recovered = {"recovered_from": str(exc)}
            cert = x509.load_pem_x509_certificate(body["management_certificate_pem"].encode())
            requests = self.requests_of(device_id)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            self.history.complete(op, "info", {"device": device_id, "error": str(exc)})
            return None
        device = Device(device_id, user_id, cert, key, requests=list(requests))
        with self._lock:
            self.devices[device_id] = device
        self.history.complete(
            op, "ok", {"device": device_id, "requests": list(requests), **recovered}
        )
        return device_id

    def _device_made(self, device_id: str, public_pem: str) -> dict[str, Any]:
        """The service's record of a device whose enrollment answer was lost, if the
        service made it with our key; raises httpx.HTTPError when it did not."""
        for attempt in self._lost_enrollment_lookup.copy():
            with attempt:
                response = self.client.get(f"/api/v1/admin/devices/{device_id}")
                response.raise_for_status()
        body = response.json()
        cert = x509.load_pem_x509_certificate(body["management_certificate_pem"].encode())
        made_for = cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if made_for.decode() != public_pem:
            raise ValueError(f"device {device_id} exists with another key")
        return dict(body)

    def checkin(self, device: Device) -> None:
        """One check-in of ``device``: :func:`chaos._workload_device.check_in`."""
        check_in(
            device,
            post=self._post,
            requests_of=self.requests_of,
            history=self.history,
            root=self.root,
        )

    def revoke_one(self) -> None:
        with self._lock:
            candidates = [d for d in self.devices.values() if d.installed and not d.retired]
            active: dict[str, int] = {}
            for d in self.devices.values():
                if not d.retired:
                    active[d.user] = active.get(d.user, 0) + 1
        if not candidates:
            return
        action = next(self._actions)
        if action != "leave-group":
            # One device of a user who has others: the shared certificate's fate is tested.
            candidates = [d for d in candidates if active[d.user] > 1] or candidates
        device = self._rng.choice(candidates)
        op = self.history.invoke(ADMIN, REVOKE, {"action": action, "device": device.id})
        body: dict[str, Any]
        if action == "leave-group":
            body = {"group_id": self.group, "user_id": device.user}
        else:
            body = {"device_id": device.id}
        try:
            result = self._post(f"/api/v1/admin/actions/{action}", body)
        except httpx.HTTPError as exc:
            self.history.complete(op, "fail", {"action": action, "error": str(exc)})
            return
        device.retired = True
        if action == "leave-group":  # every device of the user loses the group's profiles
            with self._lock:
                self._left.add(device.user)
                for other in self.devices.values():
                    if other.user == device.user:
                        other.retired = True
        self.history.complete(op, "ok", {"action": action, "device": device.id, "result": result})

    # -- loops ---------------------------------------------------------------------

    def _enroll_loop(self) -> None:
        if self.enroll_per_s <= 0:
            return
        interval = 1.0 / self.enroll_per_s
        next_at = time.monotonic()
        while not self._stop_work.is_set():
            if self._begin():
                try:
                    self.enroll_one()
                finally:
                    self._end()
            next_at += interval
            self._stop_work.wait(max(0.0, next_at - time.monotonic()))

    def _checkin_loop(self) -> None:
        """The check-in rounds: :func:`chaos._workload_device.checkin_rounds`."""
        checkin_rounds(
            self.pending_devices,
            self.checkin,
            workers=self.checkin_workers,
            interval_s=self.checkin_interval_s,
            stop=self._stop_all,
        )

    def _admin_loop(self) -> None:
        if self.revoke_every_s <= 0:
            return
        while not self._stop_work.wait(self.revoke_every_s):
            if self._begin():
                try:
                    self.revoke_one()
                finally:
                    self._end()

    def _post(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        response = self.client.post(path, json=body) if body is not None else self.client.post(path)
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"{path}: {response.status_code} {response.text[:300]}",
                request=response.request,
                response=response,
            )
        data = response.json()
        return data if isinstance(data, dict) else {}
