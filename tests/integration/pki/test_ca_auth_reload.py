"""SIGHUP's CA auth reload (issue 17) against the lab's real CFSSL and OpenBao dev server.

Each test starts a CA with wrong material (its calls fail), offers a bad new file
(refused, the setting named, the old material kept: calls still fail the same
way), then the right one: the very next call succeeds. The entry point is the one
the SIGHUP handler runs on its thread (:func:`connector.agent.reload.reload_ca_auth`).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from chaos.launch.cfssl import LAB_CLIENT, CfsslLab
from chaos.launch.openbao import OpenBaoLab
from connector.agent.events import JsonFormatter
from connector.agent.reload import reload_ca_auth
from connector.ca import CAAuthError, CAError, router_from_description
from connector.pki import KeyType, ProfileTemplate, csr_for_profile, generate_key


def _csr(name: str) -> Any:
    profile = ProfileTemplate("p", "CN={{UserName}}", [], KeyType.P256, "user-auth")
    return csr_for_profile(
        generate_key(KeyType.P256), profile, {"UserName": name, "DeviceId": f"{name}-device"}
    )


def _secret(path: Path, text: str | bytes, mode: int = 0o600) -> str:
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)
    return str(path)


def _events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    events = [line for line in lines if line.get("event_id") in (1040, 1041)]
    caplog.clear()
    return events


def test_cfssl_auth_key_and_client_pair_reload_without_restart(
    cfssl_cas: CfsslLab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = dict(cfssl_cas.describe()["cas"]["primary"])
    right_key = spec.pop("auth_key")
    denied_cert, denied_key = cfssl_cas.access.client("reload-denied")  # CN not allowed
    allowed_cert, allowed_key = cfssl_cas.access.client(LAB_CLIENT)
    spec["auth_key_file"] = _secret(tmp_path / "auth-key", secrets.token_hex(16))
    spec["client_certificate"] = str(tmp_path / "client.pem")
    spec["client_key_file"] = str(tmp_path / "client-key.pem")
    shutil.copy(denied_cert, spec["client_certificate"])
    _secret(tmp_path / "client-key.pem", denied_key.read_bytes())
    router = router_from_description(
        {"cas": {"primary": spec}, "templates": {"user-auth": ["primary"]}}
    )
    ca = router.cas["primary"]
    caplog.set_level(logging.INFO, logger="pfxha.connector.reload")
    try:
        with pytest.raises(CAError):
            ca.issue(_csr("reload-1"), "user-auth", "reload-1", timeout=10.0)

        # A rotation half done: the right pair, but an auth key file that is not hex.
        shutil.copy(allowed_cert, spec["client_certificate"])
        _secret(tmp_path / "client-key.pem", allowed_key.read_bytes())
        _secret(tmp_path / "auth-key", "not-hex")
        (outcome,) = reload_ca_auth(router, {"primary": spec})
        assert (outcome.refused, outcome.reason) == ("auth_key_file", "is not a hex key")
        (event,) = _events(caplog)
        assert (event["event_id"], event["setting"]) == (1041, "ca[primary].auth_key_file")
        with pytest.raises(CAError):  # the old (wrong) material is still the one in use
            ca.issue(_csr("reload-2"), "user-auth", "reload-2", timeout=10.0)

        _secret(tmp_path / "auth-key", right_key)
        (outcome,) = reload_ca_auth(router, {"primary": spec})
        assert outcome.refused is None
        assert set(outcome.settings) == {"auth_key_file", "client_certificate", "client_key_file"}
        assert [e["event_id"] for e in _events(caplog)] == [1040]
        issued = ca.issue(_csr("reload-3"), "user-auth", "reload-3", timeout=10.0)
        assert issued.ca_name == "primary"
    finally:
        router.close()


def test_openbao_approle_reload_is_checked_by_a_login_first(
    openbao_dev: OpenBaoLab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = dict(openbao_dev.describe("c1")["cas"]["primary"])
    right_secret = Path(spec["secret_id_file"]).read_text()
    spec["secret_id_file"] = _secret(
        tmp_path / "secret-id", "0" * 8 + "-0000-0000-0000-" + "0" * 12
    )
    router = router_from_description(
        {"cas": {"primary": spec}, "templates": {"user-auth": ["primary"]}}
    )
    ca = router.cas["primary"]
    caplog.set_level(logging.INFO, logger="pfxha.connector.reload")
    try:
        with pytest.raises(CAAuthError):
            ca.issue(_csr("bao-1"), "user-auth", "bao-1", timeout=5.0)
        _secret(tmp_path / "secret-id", right_secret, mode=0o644)  # readable by others
        (outcome,) = reload_ca_auth(router, {"primary": spec})
        assert outcome.refused == "secret_id_file"
        assert "0644" in outcome.reason or "chmod" in outcome.reason
        _secret(tmp_path / "secret-id", "1" * 8 + "-0000-0000-0000-" + "1" * 12)  # wrong id
        (outcome,) = reload_ca_auth(router, {"primary": spec})
        assert outcome.refused == "secret_id_file"
        assert "refused" in outcome.reason
        assert [e["event_id"] for e in _events(caplog)] == [1041, 1041]

        _secret(tmp_path / "secret-id", right_secret)
        (outcome,) = reload_ca_auth(router, {"primary": spec})
        assert outcome.refused is None
        assert [e["event_id"] for e in _events(caplog)] == [1040]
        assert ca.issue(_csr("bao-2"), "user-auth", "bao-2", timeout=5.0).ca_name == "primary"
    finally:
        router.close()
