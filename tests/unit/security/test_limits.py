"""The service's input limits as pure functions: strict JSON, bounded refusals, capped logs."""

from __future__ import annotations

import io
import json
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.service.limits import (
    MAX_ERRORS,
    MAX_INT_DIGITS,
    MAX_OBJECT_MEMBERS,
    bounded_errors,
    cap_log_records,
    strict_json_loads,
)

_finite_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(_finite_json)
def test_finite_json_parses_as_json_does(value: Any) -> None:
    text = json.dumps(value)
    assert strict_json_loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        '{"epoch": NaN}',
        '{"a": [1, 2, {"b": Infinity}]}',
        '{"wait_s": 1e400}',
        "1" * (MAX_INT_DIGITS + 1),
        "[" * 100_000 + "]" * 100_000,
        "{" + ",".join(f'"k{i}": 1' for i in range(MAX_OBJECT_MEMBERS + 1)) + "}",
        b"\xff\xfe\x00garbage",
        "",
    ],
)
def test_what_json_lets_through_is_refused_with_a_short_reason(text: str | bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as refused:
        strict_json_loads(text)
    assert len(str(refused.value)) < 300
    assert refused.value.doc == ""  # never a copy of the input


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_input_is_a_value_or_a_decode_error(data: bytes | str) -> None:
    try:
        value = strict_json_loads(data)
    except json.JSONDecodeError:
        return
    floats = [value] if isinstance(value, float) else []
    assert all(math.isfinite(f) for f in floats)


def test_refusals_list_few_errors_and_never_the_input() -> None:
    marker = "SECRET-INPUT-" * 1000
    errors = [
        {
            "type": "extra_forbidden",
            "loc": ("body", f"k{i}" * 500),
            "msg": "x" * 5000,
            "input": marker,
        }
        for i in range(60_000)
    ]
    out = bounded_errors(errors)
    assert out["errors"] == 60_000
    assert len(out["detail"]) == MAX_ERRORS
    text = json.dumps(out)
    assert len(text) < 6_000
    assert "SECRET-INPUT" not in text


def test_log_lines_and_tracebacks_are_capped() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("pfxha.test.cap")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        cap_log_records(1000, loggers=("pfxha.test.cap",))
        logger.warning("body=%s", "B" * 1_000_000)
        try:
            raise ValueError("E" * 1_000_000)
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert len(text) < 10_000
    assert "chars cut" in text
    assert "ValueError" in text
