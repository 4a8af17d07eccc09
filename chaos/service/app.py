"""The stand-in cloud certificate service as an ASGI app (FastAPI).

    app = create_app(ServiceConfig(db_path=Path("run/service.db")))
    uvicorn.run(app, host="127.0.0.1", port=8080)

APIs: /api/v1/admin, /api/v1/connector, /api/v1/devices, /api/v1/read;
plus /healthz, /metrics and /openapi.json. See docs/service.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chaos.service.api_actions import actions_router
from chaos.service.api_admin import admin_router
from chaos.service.api_connector import connector_router
from chaos.service.api_device import device_router
from chaos.service.api_read import gauge_snapshot, read_router
from chaos.service.auth import AuthPolicy
from chaos.service.db import Database
from chaos.service.events import Event, emit, log
from chaos.service.keys import ServiceKeys
from chaos.service.limits import BodySizeLimit
from chaos.service.metrics import ServiceMetrics
from chaos.service.renewal import scan_renewals
from chaos.service.rules import Mode
from chaos.service.store import ApiError, Store, StoreSettings

__all__ = ["ServiceConfig", "create_app"]


@dataclass(frozen=True)
class ServiceConfig:
    db_path: Path
    kra_dir: Path | None = None  # default: <db>.keys next to the database
    mode: Mode | None = None  # None: keep the stored mode (hybrid on first start)
    admin_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1_048_576
    connector_stale_after_s: float = 15.0
    poll_lease_s: float = 30.0
    renewal_interval_s: float = 60.0  # 0 disables the background scan

    def key_dir(self) -> Path:
        return self.kra_dir or self.db_path.with_name(self.db_path.name + ".keys")


def create_app(config: ServiceConfig, *, clock: Callable[[], float] = time.time) -> FastAPI:
    config.db_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(
        Database(config.db_path),
        ServiceKeys.load_or_create(config.key_dir()),
        mode=config.mode,
        settings=StoreSettings(config.connector_stale_after_s, config.poll_lease_s),
        clock=clock,
    )
    metrics = ServiceMetrics(lambda: gauge_snapshot(store))
    store.on_stale = metrics.stale_rejected
    store.on_revoked = metrics.revoked_refused
    auth = AuthPolicy.with_admin_token(config.admin_token)
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
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason, **exc.extra}, status_code=exc.status)

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
    app.include_router(read_router(store, auth))
    return app


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
