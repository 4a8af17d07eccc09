"""AppRole credentials for an OpenBao (Vault) PKI: secrets from 0600 files, a token kept fresh.

    creds = AppRoleCredentials.from_files("/etc/pfxha/bao-role-id", "/etc/pfxha/bao-secret-id")
    decision = token_decision(token, now=clock())   # TokenDecision(TokenAction.RENEW, "...")

The role ID and secret ID are read from files that group and others cannot
read (0600, or a systemd credential): a readable secret file is refused with
the path and the mode, never used. Neither the secret ID nor a token ever
appears in a ``repr``, a log line or an error message.

:func:`token_decision` is the pure rule the driver follows before each call:
no token, or one past its lease: log in; past two thirds of its lease and
renewable: renew; otherwise use it. A renewal that fails (the token reached
its max TTL, or was revoked) falls back to a new login.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from connector.identity import InsecureFileError, check_private_file

__all__ = [
    "RENEW_FRACTION",
    "AppRoleCredentials",
    "SecretFileError",
    "Token",
    "TokenAction",
    "TokenDecision",
    "read_secret_file",
    "token_decision",
]

# Renew once this share of the lease has gone by (Vault Agent renews at 2/3 too).
RENEW_FRACTION = 2 / 3


class SecretFileError(ValueError):
    """A secret file is missing, empty, or readable by group/others."""


def read_secret_file(path: str | Path, *, what: str) -> str:
    """The stripped text of a secret file that only its owner can read."""
    target = Path(path)
    try:
        check_private_file(target)
        text = target.read_text().strip()
    except OSError as exc:
        raise SecretFileError(f"{what}: cannot read {target}: {exc.strerror}") from None
    except InsecureFileError as exc:
        raise SecretFileError(f"{what}: {exc}") from None
    if not text:
        raise SecretFileError(f"{what}: {target} is empty")
    return text


@dataclass(frozen=True)
class AppRoleCredentials:
    """``role_id`` + ``secret_id`` for ``POST /v1/auth/<mount>/login``."""

    role_id: str
    secret_id: str = field(repr=False)
    mount: str = "approle"

    @classmethod
    def from_files(
        cls, role_id_file: str | Path, secret_id_file: str | Path, *, mount: str = "approle"
    ) -> AppRoleCredentials:
        return cls(
            role_id=read_secret_file(role_id_file, what="role_id_file"),
            secret_id=read_secret_file(secret_id_file, what="secret_id_file"),
            mount=mount.strip("/"),
        )

    def login_body(self) -> dict[str, str]:
        return {"role_id": self.role_id, "secret_id": self.secret_id}


@dataclass(frozen=True)
class Token:
    """A client token and its lease, on the driver's monotonic clock."""

    value: str = field(repr=False)
    obtained_at: float
    lease_s: float  # 0: no expiry (a root or periodic token without TTL)
    renewable: bool

    @property
    def expires_at(self) -> float | None:
        return None if self.lease_s <= 0 else self.obtained_at + self.lease_s


class TokenAction(enum.StrEnum):
    USE = "use"
    RENEW = "renew"
    LOGIN = "login"


@dataclass(frozen=True)
class TokenDecision:
    action: TokenAction
    reason: str


def token_decision(token: Token | None, *, now: float, margin_s: float = 1.0) -> TokenDecision:
    """What to do with ``token`` before a call at ``now`` (``margin_s``: a call's length)."""
    if token is None:
        return TokenDecision(TokenAction.LOGIN, "no token yet")
    expires = token.expires_at
    if expires is None:
        return TokenDecision(TokenAction.USE, "the token does not expire")
    if now + margin_s >= expires:
        return TokenDecision(TokenAction.LOGIN, "the token's lease is over (or about to be)")
    if now >= token.obtained_at + RENEW_FRACTION * token.lease_s:
        if token.renewable:
            return TokenDecision(TokenAction.RENEW, "two thirds of the lease have gone by")
        return TokenDecision(TokenAction.LOGIN, "the token is not renewable and ageing")
    return TokenDecision(TokenAction.USE, "the token is fresh")
