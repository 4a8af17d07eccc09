"""Hostile input to every parser the project owns: a clear error, never a crash.

Each property feeds random and mutated input and allows exactly the parser's
own error type (or a valid result); anything else (KeyError, TypeError, an
OverflowError from deep inside cryptography, ...) fails the test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.service.enrollment import ConnectorCA
from chaos.service.store import ApiError
from connector.config import ConfigError, parse_config
from connector.pki.envelope import EnvelopeError, open_envelope, seal
from connector.pki.pfx import PfxError, load_pfx
from connector.pki.templates import ProfileTemplate, TemplateError
from connector.pki.validate import CertificateValidationError, parse_certificate
from election._model import Candidate, LeaderInfo, MemberInfo, SwitchoverRequest

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")])
_NOW = dt.datetime.now(dt.UTC)
_CERT = (
    x509.CertificateBuilder()
    .subject_name(_NAME)
    .issuer_name(_NAME)
    .public_key(_KEY.public_key())
    .serial_number(1)
    .not_valid_before(_NOW - dt.timedelta(days=1))
    .not_valid_after(_NOW + dt.timedelta(days=1))
    .sign(_KEY, hashes.SHA256())
)
_DER = _CERT.public_bytes(serialization.Encoding.DER)
_PEM = _CERT.public_bytes(serialization.Encoding.PEM)
_PFX = pkcs12.serialize_key_and_certificates(
    b"x", _KEY, _CERT, None, serialization.BestAvailableEncryption(b"pfxha")
)
_ENVELOPE = seal(b"hello", _CERT)


def _mutate(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with a few bytes changed, cut short, or spliced with junk."""
    flips = st.lists(
        st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=8
    )

    def flip(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(data)
        for index, value in changes:
            out[index] = value
        return bytes(out)

    return st.one_of(
        flips.map(flip),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.tuples(st.integers(0, len(data)), st.binary(max_size=64)).map(
            lambda t: data[: t[0]] + t[1] + data[t[0] :]
        ),
    )


def _hostile(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), _mutate(valid))


# -- PEM / DER / PKCS#12 / CMS ---------------------------------------------------------


@FAST
@given(_hostile(_DER) | _hostile(_PEM))
def test_certificate_parser(data: bytes) -> None:
    with contextlib.suppress(CertificateValidationError):
        parse_certificate(data)


def test_a_certificate_claiming_version_2_is_a_validation_error_not_a_crash() -> None:
    # Found by the fuzzer above: cryptography raises InvalidVersion, no ValueError.
    v3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (v3)
    assert v3 in _DER
    with pytest.raises(CertificateValidationError, match="not a certificate"):
        parse_certificate(_DER.replace(v3, bytes.fromhex("a003020101"), 1))


@FAST
@given(_hostile(_PFX), st.sampled_from([b"pfxha", None, b""]))
def test_pfx_parser(data: bytes, password: bytes | None) -> None:
    with contextlib.suppress(PfxError):
        load_pfx(data, password)


@FAST
@given(_hostile(_ENVELOPE))
def test_envelope_parser(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        open_envelope(data, _CERT, _KEY)


# -- profile templates -------------------------------------------------------------------

_TEMPLATE_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            ["CN=", "O=", "E=", "SERIALNUMBER=", "X=", "{{UserName}}", "{{DeviceId}}", "{{",
             "}}", ",", "\\,", "+", "=", "UPN=", "DNS=", "URI=", "EMAIL=", "a", " ", "\x00"]
        ),
        max_size=12,
    ).map("".join),
)  # fmt: skip


@FAST
@given(
    _TEMPLATE_TEXT,
    st.lists(_TEMPLATE_TEXT, max_size=3),
    st.dictionaries(
        st.sampled_from(["UserName", "DeviceId", "UserPrincipalName", "EmailAddress"]),
        st.text(max_size=100),
    ),
)
def test_profile_templates(subject: str, sans: list[str], variables: dict[str, str]) -> None:
    try:
        profile = ProfileTemplate(name="p", subject=subject, san=sans)
        profile.render_subject(variables)
        profile.render_sans(variables)
    except TemplateError:
        pass


# -- connector configuration ---------------------------------------------------------------

# What TOML can hold (no null).
_SCALAR = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
_SECTION_KEYS = {
    "connector": ["name", "cluster", "priority", "mode"],
    "zookeeper": ["hosts", "session_timeout", "auth_user", "auth_password_file"],
    "service": ["url", "timeout_s", "ca_file", "identity_dir", "renew_check_s"],
    "metrics": ["listen"],
    "loop": ["batch_size", "poll_wait_s", "workers", "keypool_types"],
}
_BASE: dict[str, Any] = {
    "connector": {"name": "c1", "cluster": "lab"},
    "zookeeper": {"hosts": "127.0.0.1:2181"},
    "service": {"url": "https://127.0.0.1:8443"},
    "ca": [{"name": "a", "url": "http://127.0.0.1:8888", "auth_key_file": "/k",
            "certificate": "/c", "root": "/r"}],
    "templates": {"user-auth": ["a"]},
    "metrics": {"listen": "127.0.0.1:9100"},
}  # fmt: skip


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _BASE.items()}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*_SECTION_KEYS, "ca", "templates", "bogus"]))
        if section in _SECTION_KEYS and draw(st.booleans()):
            table = raw.setdefault(section, {})
            if isinstance(table, dict):
                table[draw(st.sampled_from(_SECTION_KEYS[section]))] = draw(_VALUE)
        else:
            raw[section] = draw(_VALUE)
    return raw


@FAST
@given(
    _configs(),
    st.dictionaries(
        st.sampled_from(
            ["PFXHA_ZOOKEEPER_SESSION_TIMEOUT", "PFXHA_SERVICE_URL", "PFXHA_LOOP_WORKERS",
             "PFXHA_CA_A_URL", "PFXHA_BOGUS", "PFXHA_CONNECTOR_PRIORITY", "PFXHA_"]
        ),
        st.text(max_size=20),
        max_size=3,
    ),
)  # fmt: skip
def test_connector_config(raw: dict[str, Any], environ: dict[str, str]) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(raw, environ).election_config()


# -- ZooKeeper node JSON ------------------------------------------------------------------

_JSON_DOC = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
_NODE_FIELDS = st.dictionaries(
    st.sampled_from(
        ["name", "epoch", "since", "liveness", "incarnation", "node", "host", "pid", "priority",
         "nofailover", "version", "started_at", "role", "fast_path", "fast_path_reason", "to",
         "requested_at"]
    ),
    _JSON_DOC,
)  # fmt: skip


def _node_bytes() -> st.SearchStrategy[bytes]:
    import json

    return st.one_of(
        st.binary(max_size=200),
        _JSON_DOC.map(lambda v: json.dumps(v).encode()),
        _NODE_FIELDS.map(lambda v: json.dumps(v).encode()),
    )


@FAST
@given(_node_bytes(), st.text(max_size=40))
def test_zookeeper_node_json(raw: bytes, node_name: str) -> None:
    leader = LeaderInfo.parse(raw)
    assert leader is None or isinstance(leader.epoch, int)
    member = MemberInfo.parse("m", raw)
    assert member.name == "m"
    SwitchoverRequest.parse(raw)
    candidate = Candidate.parse(node_name)
    assert candidate is None or isinstance(candidate.priority, int)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"epoch":Infinity,"name":null}',  # found by the test above in CI, 2026-11-30
        b'{"epoch":-Infinity,"name":"a"}',
        b'{"epoch":NaN,"name":"a"}',
        b'{"epoch":1e999,"name":"a"}',  # a float too large: infinity without the word
    ],
)
def test_a_leader_node_with_a_non_finite_epoch_is_unreadable_not_a_crash(raw: bytes) -> None:
    assert LeaderInfo.parse(raw) is None


# -- the service's enrollment: CSRs and client certificates ---------------------------------


@pytest.fixture(scope="module")
def connector_ca(tmp_path_factory: pytest.TempPathFactory) -> ConnectorCA:
    return ConnectorCA.load_or_create(Path(tmp_path_factory.mktemp("ca")))


def _csr_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


_CSR = _csr_pem()


@FAST
@given(data=st.one_of(_mutate(_CSR), st.binary(max_size=300)))
def test_enrollment_csr(connector_ca: ConnectorCA, data: bytes) -> None:
    try:
        connector_ca.sign(data.decode("utf-8", errors="replace"), "c1", _NOW)
    except ApiError as exc:
        status = exc.status
    else:
        status = 200
    assert status in (200, 400)


@FAST
@given(data=_mutate(_PEM))
def test_client_certificate_check(connector_ca: ConnectorCA, data: bytes) -> None:
    status = 200
    try:
        connector_ca.verify_client(data.decode("utf-8", errors="replace"), _NOW)
    except ApiError as exc:
        status = exc.status
    except ValueError:
        status = 403  # unreadable PEM: the auth dependency answers 403
    assert status in (200, 401, 403)
