"""Schema-driven fuzzing of the secure service (HTTPS, mutual TLS, admin credential).

Callers who cannot prove who they are, and an enrolled connector sending
anything at all: every answer is a documented 4xx or a 2xx, never a 5xx, and
the read API shows no change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from chaos.launch.service import ServiceProcess
from connector.identity import enroll

_EXAMPLES = 3


@pytest.fixture(scope="module")
def identity_pair(
    secure_service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    assert secure_service.tls is not None
    identity = enroll(
        secure_service.url,
        secure_service.enrollment_token("fuzzer"),
        Path(tmp_path_factory.mktemp("fuzzer")),
        verify=str(secure_service.tls.server_ca),
    )
    return identity.cert_pair


@pytest.fixture(scope="module")
def reader(secure_service: ServiceProcess) -> Iterator[httpx.Client]:
    with secure_service.admin_client() as client:
        yield client


def _state(reader: httpx.Client) -> tuple[Any, ...]:
    return (
        reader.get("/api/v1/read/requests").json(),
        reader.get("/api/v1/read/revocations").json(),
        [c["name"] for c in reader.get("/api/v1/read/connectors").json()],
    )


@pytest.mark.parametrize("as_connector", [False, True], ids=["anonymous", "enrolled-connector"])
def test_secure_service_refuses_cleanly(
    secure_service: ServiceProcess,
    reader: httpx.Client,
    identity_pair: tuple[str, str],
    as_connector: bool,
) -> None:
    assert secure_service.tls is not None
    schema = schemathesis.openapi.from_url(
        secure_service.url + "/openapi.json", verify=str(secure_service.tls.server_ca)
    )
    tls: dict[str, Any] = {"verify": str(secure_service.tls.server_ca)}
    if as_connector:
        tls["cert"] = identity_pair
    fuzzed = 0
    seen: set[int] = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok)
        operation = result.ok()
        if as_connector and not operation.path.startswith("/api/v1/connector"):
            continue

        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        @settings(
            max_examples=_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: Any) -> None:
            before = _state(reader) if case.method.upper() != "GET" else None
            response = case.call(base_url=secure_service.url, timeout=35, **tls)
            where = f"{case.method} {case.formatted_path}"
            seen.add(response.status_code)
            assert response.status_code < 500, f"{where}: {response.text[:300]}"
            case.validate_response(
                response, checks=[status_code_conformance, content_type_conformance]
            )
            if before is not None and response.status_code >= 400:
                assert _state(reader) == before, f"{where} {response.status_code} changed state"

        try:
            call()
        except Unsatisfiable:
            continue
        fuzzed += 1
    assert fuzzed > (5 if as_connector else 20)
    # The certificate was presented: the connector got past authentication.
    assert (seen - {401} != set()) if as_connector else (401 in seen)
