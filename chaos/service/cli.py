"""``pfxha service run``: the stand-in cloud service under uvicorn."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
import uvicorn

from chaos.service.rules import Mode

__all__ = ["run"]


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


@click.command()
@click.option(
    "--db", "db_path", required=True, type=click.Path(path_type=Path), help="SQLite file."
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT")
@click.option(
    "--kra-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of the KRA and device-CA keys (default: <db>.keys).",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=None,
    help="Revocation-table column; default: what the database holds (hybrid).",
)
@click.option(
    "--connector-stale-after",
    type=float,
    default=15.0,
    show_default=True,
    help="Seconds without a call after which a connector's health is 'unknown'.",
)
@click.option(
    "--poll-lease",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a polled request is not handed out again to the same epoch.",
)
@click.option(
    "--renewal-interval",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between renewal scans (0 disables).",
)
@click.option(
    "--user-renewal-deadline",
    type=float,
    default=7 * 86_400.0,
    show_default=True,
    help="Seconds after a user-scoped renewal was issued after which the certificate it "
    "replaces is revoked even if some of the user's devices have not installed the new one.",
)
@click.option(
    "--key-recovery-limit",
    type=int,
    default=5,
    show_default=True,
    help="Key recoveries allowed in any --key-recovery-window, for the whole service.",
)
@click.option(
    "--key-recovery-window",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds of the key-recovery rate limit's window.",
)
@click.option(
    "--max-body",
    type=int,
    default=1_048_576,
    show_default=True,
    help="Largest request body in bytes.",
)
@click.option(
    "--admin-token-env",
    default="PFXHA_ADMIN_TOKEN",
    show_default=True,
    help="Environment variable holding the admin token (unset: admin API open).",
)
@click.option(
    "--admin-token-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="File holding the admin token (mode 0600; wins over --admin-token-env).",
)
@click.option("--ssl-certfile", type=click.Path(path_type=Path), default=None)
@click.option("--ssl-keyfile", type=click.Path(path_type=Path), default=None)
@click.option(
    "--ssl-ca-certs",
    type=click.Path(path_type=Path),
    default=None,
    help="CA bundle for client certificates (mutual TLS).",
)
@click.option(
    "--require-client-certs",
    is_flag=True,
    default=False,
    help="Connector API: enrolled connector certificate; device API: the device's "
    "management certificate (needs --ssl-certfile and an admin credential).",
)
@click.option(
    "--require-connector-certs",
    is_flag=True,
    default=False,
    help="Like --require-client-certs, for the connector API only.",
)
@click.option(
    "--admin-credential-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="File holding an scrypt hash of the admin credential (chaos.service.auth."
    "hash_credential), mode 0600.",
)
@click.option(
    "--connector-cert-validity",
    type=float,
    default=30 * 86_400.0,
    show_default=True,
    help="Seconds a connector certificate is valid.",
)
@click.option(
    "--max-connections-per-client",
    type=int,
    default=256,
    show_default=True,
    help="Open connections one client address may hold (0: no cap).",
)
@click.option(
    "--header-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a complete request head (request line and "
    "headers), from connecting or from the previous response; then the connection is "
    "closed (0: no limit).",
)
@click.option(
    "--body-timeout",
    type=float,
    default=20.0,
    show_default=True,
    help="Seconds a client has to send a complete request body once its head arrived "
    "(408 and the connection closed).",
)
def run(
    db_path: Path,
    listen: str,
    kra_dir: Path | None,
    mode: str | None,
    connector_stale_after: float,
    poll_lease: float,
    renewal_interval: float,
    user_renewal_deadline: float,
    key_recovery_limit: int,
    key_recovery_window: float,
    max_body: int,
    admin_token_env: str,
    admin_token_file: Path | None,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    ssl_ca_certs: Path | None,
    require_client_certs: bool,
    require_connector_certs: bool,
    admin_credential_file: Path | None,
    connector_cert_validity: float,
    max_connections_per_client: int,
    header_timeout: float,
    body_timeout: float,
) -> None:
    """Serve the stand-in cloud certificate service."""
    import logging
    import ssl
    import sys

    from chaos.service.app import CLIENT_CA_BUNDLE, ServiceConfig, create_app
    from chaos.service.limits import cap_log_records
    from chaos.service.tls import peer_cert_protocol

    host, port = _listen(listen)
    if not logging.getLogger().handlers:  # run as ``python -m chaos.service``
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
    if connector_stale_after <= 0:
        raise click.BadParameter("must be > 0", param_hint="--connector-stale-after")
    if poll_lease <= 0:
        raise click.BadParameter("must be > 0", param_hint="--poll-lease")
    if user_renewal_deadline <= 0:
        raise click.BadParameter("must be > 0", param_hint="--user-renewal-deadline")
    if key_recovery_limit < 1:
        raise click.BadParameter("must be >= 1", param_hint="--key-recovery-limit")
    if key_recovery_window <= 0:
        raise click.BadParameter("must be > 0", param_hint="--key-recovery-window")
    if header_timeout < 0:
        raise click.BadParameter("must be >= 0", param_hint="--header-timeout")
    if body_timeout <= 0:
        raise click.BadParameter("must be > 0", param_hint="--body-timeout")
    if max_body < 1024:
        raise click.BadParameter("must be at least 1024", param_hint="--max-body")
    if ssl_keyfile is not None:
        check_private(ssl_keyfile, "--ssl-keyfile")
    admin_hash = None
    if admin_credential_file is not None:
        check_private(admin_credential_file, "--admin-credential-file")
        admin_hash = admin_credential_file.read_text().strip()
        if not admin_hash.startswith("scrypt$"):
            raise click.BadParameter(
                f"{admin_credential_file} does not hold an scrypt$... hash",
                param_hint="--admin-credential-file",
            )
    admin_token = _admin_token(admin_token_file, admin_token_env)
    mutual = require_client_certs or require_connector_certs
    if mutual:
        if ssl_certfile is None:
            raise click.BadParameter("needs --ssl-certfile", param_hint="--require-client-certs")
        if admin_token is None and admin_hash is None:
            raise click.BadParameter(
                "needs an admin credential (--admin-token-file, --admin-token-env or "
                "--admin-credential-file)",
                param_hint="--require-client-certs",
            )
    if connector_cert_validity < 60:
        raise click.BadParameter("must be >= 60", param_hint="--connector-cert-validity")
    config = ServiceConfig(
        db_path=db_path,
        kra_dir=kra_dir,
        mode=Mode(mode) if mode else None,
        admin_token=admin_token,
        admin_credential_hash=admin_hash,
        require_client_certs=require_client_certs,
        require_connector_certs=require_connector_certs,
        connector_cert_validity_s=connector_cert_validity,
        max_body_bytes=max_body,
        body_timeout_s=body_timeout,
        connector_stale_after_s=connector_stale_after,
        poll_lease_s=poll_lease,
        renewal_interval_s=renewal_interval,
        user_renewal_deadline_s=user_renewal_deadline,
        key_recovery_limit=key_recovery_limit,
        key_recovery_window_s=key_recovery_window,
    )
    app = create_app(config)
    if mutual:
        # The TLS layer accepts certificates of the connector CA and the device
        # CA; the app then checks which API may be called with which.
        ssl_ca_certs = config.key_dir() / CLIENT_CA_BUNDLE
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        ssl_ca_certs=str(ssl_ca_certs) if ssl_ca_certs else None,
        ssl_cert_reqs=ssl.CERT_OPTIONAL if ssl_ca_certs else ssl.CERT_NONE,
        timeout_graceful_shutdown=3,
        http=peer_cert_protocol(max_connections_per_client, header_timeout),
    )
    cap_log_records()  # after uvicorn configured its own log handlers
    _Server(server_config, on_exit=app.state.store.close).run()


def check_private(path: Path, option: str) -> None:
    """Refuse to start on a secret file that group or others may read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise click.BadParameter(
            f"{path} is readable by others (mode {oct(mode)}); run: chmod 600 {path}",
            param_hint=option,
        )


def _admin_token(path: Path | None, env: str) -> str | None:
    if path is None:
        return os.environ.get(env) or None
    check_private(path, "--admin-token-file")
    token = path.read_text().strip()
    if not token:
        raise click.BadParameter(f"{path} is empty", param_hint="--admin-token-file")
    return token


class _Server(uvicorn.Server):
    """uvicorn, but long polls are told to answer the moment shutdown begins.

    uvicorn waits for open requests before the app's lifespan shutdown runs;
    a long poll would hold it for up to 30 s, then be cut off with a 500.
    """

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)
