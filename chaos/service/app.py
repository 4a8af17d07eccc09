"""The stand-in cloud certificate service as an ASGI app (FastAPI).

    app = create_app(ServiceConfig(db_path=Path("run/service.db")))
    uvicorn.run(app, host="127.0.0.1", port=8080)

APIs: /api/v1/admin, /api/v1/connector, /api/v1/devices, /api/v1/read;
plus /healthz, /metrics and /openapi.json. See docs/service.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chaos.service.api_actions import actions_router
from chaos.service.api_admin import admin_router
from chaos.service.api_connector import connector_router
from chaos.service.api_device import device_router
from chaos.service.api_enroll import enroll_router
from chaos.service.api_import import import_router
from chaos.service.api_read import gauge_snapshot, read_router
from chaos.service.api_recovery import recovery_router
from chaos.service.auth import AuthPolicy
from chaos.service.db import Database
from chaos.service.enrollment import ConnectorCA
from chaos.service.events import Event, emit, log
from chaos.service.keys import ServiceKeys
from chaos.service.limits import BodyGuard, bounded_validation_error
from chaos.service.metrics import ServiceMetrics
from chaos.service.renewal import scan_renewals
from chaos.service.rules import Mode
from chaos.service.store import ApiError, Store, StoreSettings

__all__ = ["CLIENT_CA_BUNDLE", "ServiceConfig", "create_app", "write_client_ca_bundle"]

CLIENT_CA_BUNDLE = "client-ca-bundle.pem"  # connector CA + device CA: what TLS accepts


@dataclass(frozen=True)
class ServiceConfig:
    db_path: Path
    kra_dir: Path | None = None  # default: <db>.keys next to the database
    mode: Mode | None = None  # None: keep the stored mode (hybrid on first start)
    admin_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1_048_576
    body_timeout_s: float = 20.0  # the whole body must arrive within this (else 408)
    connector_stale_after_s: float = 15.0
    poll_lease_s: float = 30.0
    renewal_interval_s: float = 60.0  # 0 disables the background scan
    user_renewal_deadline_s: float = 7 * 86_400.0  # see StoreSettings
    key_recovery_limit: int = 5  # see StoreSettings
    key_recovery_window_s: float = 3600.0
    # Mutual TLS for the connector and device APIs (issue 8): the app checks
    # the certificate uvicorn verified (chaos.service.tls puts it in the scope).
    require_client_certs: bool = False  # both APIs
    require_connector_certs: bool = False  # the connector API only (the lab's workload
    # checks devices in through the admin client)
    admin_credential_hash: str | None = field(default=None, repr=False)  # scrypt$...
    connector_cert_validity_s: float = 30 * 86_400

    def key_dir(self) -> Path:
        return self.kra_dir or self.db_path.with_name(self.db_path.name + ".keys")


def create_app(config: ServiceConfig, *, clock: Callable[[], float] = time.time) -> FastAPI:
    config.db_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(
        Database(config.db_path),
        ServiceKeys.load_or_create(config.key_dir()),
        mode=config.mode,
        settings=StoreSettings(
            config.connector_stale_after_s,
            config.poll_lease_s,
            user_renewal_deadline_s=config.user_renewal_deadline_s,
            key_recovery_limit=config.key_recovery_limit,
            key_recovery_window_s=config.key_recovery_window_s,
        ),
        clock=clock,
    )
    metrics = ServiceMetrics(lambda: gauge_snapshot(store))
    store.on_stale = metrics.stale_rejected
    store.on_revoked = metrics.revoked_refused
    store.on_forged = metrics.forged_refused
    connector_ca = ConnectorCA.load_or_create(
        config.key_dir(), dt.timedelta(seconds=config.connector_cert_validity_s)
    )
    write_client_ca_bundle(config.key_dir(), connector_ca, store.keys)
    auth = dataclasses.replace(
        AuthPolicy.with_admin_token(config.admin_token),
        admin_scrypt=config.admin_credential_hash,
        on_refused=metrics.auth_refused,
        clock=clock,
    )
    if config.require_client_certs or config.require_connector_certs:
        auth = dataclasses.replace(auth, connector_ca=connector_ca)
    if config.require_client_certs:
        auth = dataclasses.replace(
            auth,
            device_ca=store.keys.device_ca_certificate,
            device_certificate=lambda device_id: _device_certificate(store, device_id),
        )
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = None
        if config.renewal_interval_s > 0:
            worker = threading.Thread(
                target=_renewal_loop,
                args=(store, config.renewal_interval_s, stop),
                name="renewal-scan",
                daemon=True,
            )
            worker.start()
        log.info("service ready db=%s mode=%s", config.db_path, config.mode)
        try:
            yield
        finally:
            stop.set()
            store.close()
            if worker is not None:
                worker.join(timeout=5)
            # The database stays open: a request thread still finishing must
            # not fail on a closed connection; the process exit closes it.

    app = FastAPI(
        title="pfxha stand-in cloud certificate service",
        version="1",
        lifespan=lifespan,
        description="Profiles, devices, certificate requests, revocations and connector "
        "registrations with epoch fencing. See docs/service.md.",
    )
    app.state.store = store
    app.state.metrics = metrics
    app.add_middleware(BodyGuard, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_exception_handler(RequestValidationError, bounded_validation_error)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {}
        retry = exc.extra.get("retry_after_s")
        if isinstance(retry, int | float):
            headers["Retry-After"] = str(max(1, math.ceil(retry)))
        detail: object = exc.reason
        if exc.status == 422:
            # The OpenAPI document gives every 422 FastAPI's validation shape: a list.
            detail = [{"loc": ["body"], "msg": exc.reason, "type": "value_error"}]
        return JSONResponse(
            {"detail": detail, **exc.extra}, status_code=exc.status, headers=headers
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        store.db.query("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(admin_router(store, auth))
    app.include_router(actions_router(store, auth))
    app.include_router(connector_router(store, auth))
    app.include_router(device_router(store, auth))
    app.include_router(recovery_router(store, auth))
    app.include_router(import_router(store, auth))
    app.include_router(read_router(store, auth))
    app.include_router(enroll_router(store, auth, connector_ca))
    return app


def write_client_ca_bundle(key_dir: Path, connector_ca: ConnectorCA, keys: ServiceKeys) -> Path:
    """The CAs whose client certificates the TLS layer accepts (the app then checks which)."""
    from cryptography.hazmat.primitives import serialization

    path = key_dir / CLIENT_CA_BUNDLE
    pem = (
        connector_ca.pem
        + keys.device_ca_certificate.public_bytes(serialization.Encoding.PEM).decode()
    )
    path.write_text(pem)
    return path


def _device_certificate(store: Store, device_id: str) -> str | None:
    rows = store.db.query("SELECT certificate_pem FROM devices WHERE id = ?", (device_id,))
    return str(rows[0]["certificate_pem"]) if rows else None


def _renewal_loop(store: Store, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            with store.db.transaction() as tx:
                queued = scan_renewals(store, tx, dt.datetime.fromtimestamp(store.clock(), dt.UTC))
        except Exception:  # keep scanning; the next round may succeed
            log.exception("renewal scan failed")
            continue
        if queued:
            emit(log, Event.RENEWALS_QUEUED, cause="scan", count=queued)
            store.wake()
