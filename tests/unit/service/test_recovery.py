"""Key-recovery rules (chaos.service.recovery): pure, no service."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chaos.service.recovery import recovery_agent, recovery_allowed
from tests.fixtures.certs import pem, rsa_key, self_signed

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def agent_pem(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    *,
    usage: x509.KeyUsage | None = None,
    ca: bool = False,
    days: int = 30,
) -> str:
    return pem(
        self_signed(key or rsa_key(), "recovery agent", now=NOW, days=days, ca=ca, usage=usage)
    )


def usage(*, encipher: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def test_an_rsa_encryption_certificate_is_accepted() -> None:
    for text in (agent_pem(), agent_pem(usage=usage(encipher=True))):
        check = recovery_agent(text, NOW)
        assert check.problem is None
        assert check.certificate is not None


@pytest.mark.parametrize(
    ("pem", "words"),
    [
        ("not a pem", "exactly one PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not a readable X.509",
        ),
        (agent_pem(ec.generate_private_key(ec.SECP256R1())), "must be RSA"),
        (agent_pem(usage=usage(encipher=False)), "lacks keyEncipherment"),
        (agent_pem(ca=True), "a CA certificate"),
        (agent_pem(days=-2), "not valid now"),
        (agent_pem() + agent_pem(), "exactly one PEM certificate"),
    ],
)
def test_what_cannot_receive_keys_is_refused_with_the_reason(pem: str, words: str) -> None:
    check = recovery_agent(pem, NOW)
    assert check.certificate is None
    assert check.problem is not None
    assert check.problem.startswith("recovery_agent_certificate_pem: ")
    assert words in check.problem


def test_a_small_rsa_key_is_refused() -> None:
    check = recovery_agent(agent_pem(rsa_key(1024)), NOW)
    assert check.problem is not None
    assert "1024 bits" in check.problem


def test_the_rate_limit_counts_only_the_window_and_says_when_to_retry() -> None:
    allowed = recovery_allowed(recent=[10.0, 500.0], now=1000.0, limit=3, window_s=600)
    assert (allowed.allowed, allowed.retry_after_s) == (True, 0.0)
    assert "1 of 3" in allowed.reason  # t=10 fell out of the window
    full = recovery_allowed(recent=[500.0, 700.0, 900.0], now=1000.0, limit=3, window_s=600)
    assert not full.allowed
    assert full.retry_after_s == pytest.approx(100.0)  # when t=500 leaves the window
    assert "--key-recovery-limit 3" in full.reason
    later = recovery_allowed(recent=[500.0, 700.0, 900.0], now=1100.0, limit=3, window_s=600)
    assert later.allowed
