"""Pure rules of key recovery: who may receive a user's escrowed keys, and how often.

An admin recovers a user's escrowed PFX files (current, history, withdrawn)
sealed to a recovery agent's certificate given in the request; the service
checks that certificate here and counts recoveries against a budget. No I/O;
:mod:`chaos.service.api_recovery` applies these::

    agent = recovery_agent(pem_text, now)      # AgentCheck(certificate, None) or (None, why)
    recovery_allowed(recent=[t1, t2], now=t3, limit=5, window_s=3600)
    # RateVerdict(True, "2 of 5 recoveries in the last 3600 s", 0.0)

A recovery agent certificate must hold an RSA key of at least 2048 bits (the
escrow is sealed as CMS EnvelopedData with RSA key transport, as to the KRA),
be valid now, not be a CA, and, where it says what its key is for, allow key
encipherment: a signing-only or a CA certificate is not where keys are sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["AgentCheck", "RateVerdict", "recovery_agent", "recovery_allowed"]

MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class AgentCheck:
    certificate: x509.Certificate | None  # None: refused, ``problem`` says why
    problem: str | None


def _refuse(problem: str) -> AgentCheck:
    return AgentCheck(None, f"recovery_agent_certificate_pem: {problem}")


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def recovery_agent(pem: str, now: dt.datetime) -> AgentCheck:
    """The recovery agent's certificate from ``pem``, or why it cannot receive keys."""
    if pem.count("-----BEGIN CERTIFICATE-----") != 1:
        return _refuse("expected exactly one PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        key = cert.public_key()
        usage = _extension(cert, x509.KeyUsage)
        constraints = _extension(cert, x509.BasicConstraints)
    except ValueError as exc:
        return _refuse(f"not a readable X.509 certificate ({exc})")
    if not isinstance(key, rsa.RSAPublicKey):
        return _refuse(
            "not an encryption certificate: the key must be RSA (escrowed keys are sealed "
            "with RSA key transport)"
        )
    if key.key_size < MIN_RSA_BITS:
        return _refuse(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} required")
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        return _refuse("a CA certificate; give the recovery agent's own certificate")
    if isinstance(usage, x509.KeyUsage) and not usage.key_encipherment:
        return _refuse("not an encryption certificate: its key usage lacks keyEncipherment")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return _refuse(
            f"not valid now (valid {cert.not_valid_before_utc.isoformat()} to "
            f"{cert.not_valid_after_utc.isoformat()})"
        )
    return AgentCheck(cert, None)


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    reason: str
    retry_after_s: float  # 0 when allowed


def recovery_allowed(
    *, recent: Sequence[float], now: float, limit: int, window_s: float
) -> RateVerdict:
    """May one more recovery run now, given the times of earlier ones (any admin, any user)?

    At most ``limit`` recoveries in any ``window_s`` seconds: a stolen admin
    credential cannot drain the escrow faster than that.
    """
    inside = sorted(t for t in recent if now - window_s < t <= now)
    if len(inside) < limit:
        return RateVerdict(
            True, f"{len(inside)} of {limit} recoveries in the last {window_s:g} s", 0.0
        )
    retry = inside[len(inside) - limit] + window_s - now
    return RateVerdict(
        False,
        f"key recovery limit reached: {len(inside)} recoveries in the last {window_s:g} s "
        f"(--key-recovery-limit {limit} per --key-recovery-window {window_s:g})",
        max(retry, 0.0),
    )
