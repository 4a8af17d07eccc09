"""An issuing CA behind TLS: ``[[ca]] url = "https://..."`` with ``ca_file``.

The lab's primary CA is served a second time by ``cfssl serve -tls-cert
-tls-key`` with a loopback certificate nobody's public CA bundle trusts (the
case of every internal CA). With ``ca_file`` naming that certificate the
connector's CFSSL client issues over HTTPS; without it, httpx checks against
certifi and the CA is unreachable, which is why the setting exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.launch._process import ManagedProcess, free_port, port_open, wait_for
from chaos.launch.cfssl import CfsslLab
from chaos.launch.service import self_signed_loopback
from connector.ca import CAUnavailableError, CfsslCA
from connector.config import parse_config
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key


@pytest.fixture
def tls_primary(cfssl_lab: CfsslLab, tmp_path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """(the primary's spec with an https:// url, the TLS certificate that verifies it)."""
    cert, key = self_signed_loopback(tmp_path / "tls")
    ca_dir = cfssl_lab.run_dir / "primary"
    port = free_port()
    argv = ["cfssl", "serve", "-address", "127.0.0.1", "-port", str(port)]
    argv += ["-ca", str(ca_dir / "ca.pem"), "-ca-key", str(ca_dir / "ca-key.pem")]
    argv += ["-config", str(ca_dir / "config.json"), "-db-config", str(ca_dir / "db.json")]
    argv += ["-tls-cert", str(cert), "-tls-key", str(key), "-loglevel", "1"]
    proc = ManagedProcess("cfssl-tls", argv, log_path=tmp_path / "cfssl-tls.log", cwd=ca_dir)
    proc.start()
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=20, what="cfssl serving TLS")
        spec = dict(cfssl_lab.describe()["cas"]["primary"])
        spec["url"] = f"https://127.0.0.1:{port}"
        yield spec, cert
    finally:
        proc.stop(grace=5)


def _csr() -> Any:
    profile = ProfileTemplate("p", "CN={{UserName}}", [], KeyType.P256, "user-auth")
    return csr_for_profile(
        generate_key(KeyType.P256), profile, {"UserName": "tls-test", "DeviceId": "tls-device"}
    )


def test_https_ca_issues_with_its_ca_file(tls_primary: tuple[dict[str, Any], Path]) -> None:
    spec, cert = tls_primary
    # The setting as an operator writes it, through the config parser.
    config = parse_config(
        {
            "connector": {"name": "c1", "cluster": "tls"},
            "zookeeper": {"hosts": "127.0.0.1:2181"},
            "service": {"url": "https://127.0.0.1:8443"},
            "ca": [
                {
                    "name": "primary",
                    "url": spec["url"],
                    "auth_key_file": "unused-here",
                    "certificate": spec["certificate"],
                    "root": spec["root"],
                    "ca_file": str(cert),
                    # This test is about TLS to the CA, not reconciliation.
                    "reconcile": "off",
                }
            ],
            "templates": {"user-auth": ["primary"]},
        },
        {},
    )
    from_config = config.ca("primary").as_spec()
    assert from_config["ca_file"] == str(cert)
    ca = CfsslCA.from_dict({**from_config, "auth_key": spec["auth_key"], "auth_key_file": None})
    try:
        issued = ca.issue(_csr(), "user-auth", "tls-1", timeout=10.0)
    finally:
        ca.close()
    assert issued.serial > 0


def test_https_ca_without_ca_file_is_unreachable(tls_primary: tuple[dict[str, Any], Path]) -> None:
    spec, _ = tls_primary
    ca = CfsslCA.from_dict({**spec, "ca_file": None})
    started = time.monotonic()
    try:
        with pytest.raises(CAUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            ca.issue(_csr(), "user-auth", "tls-2", timeout=10.0)
    finally:
        ca.close()
    assert time.monotonic() - started < 10.0
