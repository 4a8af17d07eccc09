"""Schema-driven fuzzing of every endpoint (schemathesis, positive and negative cases).

Outcome for every generated call: never a 5xx; the status code, content type
and body are the ones the OpenAPI document declares; and a refused write (4xx)
changes nothing visible through the read API. Bounded to a few hundred
examples in all (``_EXAMPLES`` per operation).
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
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chaos.launch.service import ServiceProcess

_EXAMPLES = 5
_CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        Path(tmp_path_factory.mktemp("fuzz")), extra_args=["--renewal-interval", "0"]
    )
    svc.start()
    yield svc
    svc.stop(grace=5)


@pytest.fixture(scope="module")
def reader(fuzzed_service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed_service.url, timeout=10) as client:
        yield client


def _visible_state(reader: httpx.Client) -> tuple[Any, ...]:
    connectors = reader.get("/api/v1/read/connectors").json()
    for c in connectors:  # liveness fields move with the clock, not with the call
        c.pop("last_seen", None)
        c.pop("health", None)
        c.pop("role", None)
    return (
        reader.get("/api/v1/read/requests").json(),
        reader.get("/api/v1/read/revocations").json(),
        connectors,
    )


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"invalid operation in /openapi.json: {result}"
        operations.append(result.ok())
    return operations


# One pytest test per generation mode; each walks every operation. (The
# schemathesis pytest plugin's lazy fixtures do not work with this pytest.)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gives_a_server_error_or_a_partial_change(
    mode: GenerationMode, fuzzed_service: ServiceProcess, reader: httpx.Client
) -> None:
    operations = _operations(fuzzed_service.url)
    assert len(operations) > 30  # every API is in the document
    fuzzed = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: Any) -> None:
            # Reads are fuzzed for 5xx only; only writes could leave a partial change.
            writes = case.method.upper() != "GET"
            before = _visible_state(reader) if writes else None
            response = case.call(base_url=fuzzed_service.url, timeout=35)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, (
                f"{where} -> {response.status_code}: {response.text[:300]}"
            )
            case.validate_response(
                response,
                checks=[
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )
            if writes and 400 <= response.status_code < 500:
                assert _visible_state(reader) == before, (
                    f"{where} {response.status_code} changed state"
                )

        try:
            call()
        except Unsatisfiable:
            # Nothing to break: an operation without parameters has no negative case.
            assert mode is GenerationMode.NEGATIVE
            continue
        fuzzed += 1
    assert fuzzed > 20
