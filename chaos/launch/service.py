"""Launch the stand-in cloud service as its own process on a free loopback port.

    svc = ServiceProcess(run_dir / "service", mode="hybrid")
    svc.start()                      # waits until GET /healthz answers
    svc.url                          # "http://127.0.0.1:<port>"
    svc.restart()                    # same port, same database: nothing acknowledged is lost
    svc.kill(); svc.stop()

The database is ``<dir>/service.db``, the keys ``<dir>/keys``, the log
``<dir>/service.log``. An admin token, if any, goes through the environment,
never the command line.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from chaos.launch._process import LaunchError, ManagedProcess, free_port, wait_for
from chaos.launch.netns import Host

__all__ = ["ServiceProcess", "ServiceTLS", "self_signed_loopback"]

_TOKEN_ENV = "PFXHA_ADMIN_TOKEN"  # noqa: S105 - the variable name, not a token


@dataclass(frozen=True)
class ServiceTLS:
    """Serve HTTPS: server certificate and key, the CA that verifies it, and
    optionally the CA bundle for client certificates (mutual TLS)."""

    certfile: Path
    keyfile: Path
    server_ca: Path
    client_ca: Path | None = None
    # Mutual TLS on the connector and device APIs: enrolled connector
    # certificates, device management certificates (needs an admin token).
    require_client_certs: bool = False
    require_connector_certs: bool = False  # the connector API only


class ServiceProcess:
    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        mode: str | None = None,
        admin_token: str | None = None,
        extra_args: Sequence[str] = (),
        name: str = "service",
        tls: ServiceTLS | None = None,
        placement: Host | None = None,
    ) -> None:
        """``placement``: run inside that lab host, on its address (port 8443 by default)."""
        self.directory = directory
        if placement is not None:
            host = placement.address
            port = port or 8443
        self.host = host
        self.port = port or free_port(host)
        self.admin_token = admin_token
        self.tls = tls
        self.db_path = directory / "service.db"
        self.kra_dir = directory / "keys"
        argv = [
            sys.executable,
            "-m",
            "chaos.service",
            "--db",
            str(self.db_path),
            "--listen",
            f"{host}:{self.port}",
            "--kra-dir",
            str(self.kra_dir),
            "--admin-token-env",
            _TOKEN_ENV,
        ]
        if mode is not None:
            argv += ["--mode", mode]
        if tls is not None:
            argv += ["--ssl-certfile", str(tls.certfile), "--ssl-keyfile", str(tls.keyfile)]
            if tls.client_ca is not None:
                argv += ["--ssl-ca-certs", str(tls.client_ca)]
            if tls.require_client_certs:
                argv += ["--require-client-certs"]
            if tls.require_connector_certs:
                argv += ["--require-connector-certs"]
        argv += list(extra_args)
        env = {_TOKEN_ENV: admin_token} if admin_token else {_TOKEN_ENV: ""}
        if placement is not None:
            argv = placement.wrap(argv)
        self.process = ManagedProcess(name, argv, log_path=directory / "service.log", env=env)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx clients pass as ``verify`` to trust this service."""
        if self.tls is None:
            return True
        return ssl.create_default_context(cafile=str(self.tls.server_ca))

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def healthy(self) -> bool:
        try:
            answer = httpx.get(self.url + "/healthz", timeout=0.5, verify=self.verify)
            return answer.status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 20.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process.start()

        def ready() -> bool:
            if not self.process.running():
                raise LaunchError(
                    f"service exited with {self.process.returncode()}:\n{self.process.tail()}"
                )
            return self.healthy()

        try:
            wait_for(ready, timeout=timeout, what=f"service /healthz on {self.url}")
        except LaunchError:
            self.process.kill()
            raise

    def stop(self, grace: float = 10.0) -> None:
        self.process.stop(grace)

    def kill(self) -> None:
        self.process.kill()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def restart(self, timeout: float = 20.0) -> None:
        self.stop()
        self.start(timeout)

    @property
    def connector_ca(self) -> Path:
        """The service's connector CA certificate (created at its first start)."""
        return self.kra_dir / "connector-ca.pem"

    def enrollment_token(self, name: str, ttl_s: int = 600) -> str:
        """A one-time enrollment token for connector ``name`` (admin API)."""
        with self.admin_client() as client:
            answer = client.post(
                f"/api/v1/admin/connectors/{name}/enrollment-token", json={"ttl_s": ttl_s}
            )
            answer.raise_for_status()
            return str(answer.json()["token"])

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def admin_client(self, timeout: float = 10.0) -> httpx.Client:
        """An httpx client for the admin, device and read APIs (closing it is the caller's)."""
        return httpx.Client(
            base_url=self.url, headers=self.admin_headers(), timeout=timeout, verify=self.verify
        )


def self_signed_loopback(
    directory: Path, addresses: Sequence[str] = ("127.0.0.1",)
) -> tuple[Path, Path]:
    """A self-signed server certificate for ``addresses`` and its key (0600): (cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from chaos.launch._x509 import build_certificate, write_pair

    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = build_certificate(
        "pfxha test service",
        key.public_key(),
        key,
        extensions=[
            (x509.SubjectAlternativeName(sans), False),
            (x509.BasicConstraints(ca=True, path_length=None), True),
        ],
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    write_pair(cert_path, key_path, cert, key)
    return cert_path, key_path
