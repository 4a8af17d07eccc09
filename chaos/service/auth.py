"""Who may call what: one FastAPI dependency per caller kind.

Open by default (the lab before issue 8); an admin token turns on bearer
authentication for the admin and read APIs. Only a SHA-256 of the token is
kept in memory, and it is compared in constant time::

    auth = AuthPolicy.with_admin_token(token)        # or AuthPolicy() for open
    router = APIRouter(dependencies=[Depends(auth.admin)])

The connector and device hooks are where mutual TLS (connector certificate,
device management certificate) plugs in.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from chaos.service.store import ApiError

__all__ = ["AuthPolicy"]


@dataclass(frozen=True)
class AuthPolicy:
    admin_token_sha256: bytes | None = None

    @classmethod
    def with_admin_token(cls, token: str | None) -> AuthPolicy:
        if not token:
            return cls()
        return cls(admin_token_sha256=hashlib.sha256(token.encode()).digest())

    def admin(self, request: Request) -> None:
        if self.admin_token_sha256 is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        presented = hashlib.sha256(token.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented, self.admin_token_sha256
        ):
            raise ApiError(401, "admin credential required (Authorization: Bearer <token>)")

    def connector(self, request: Request) -> None:
        """Open until enrollment and mutual TLS arrive (issue 8)."""

    def device(self, request: Request) -> None:
        """Open until device authentication by management key arrives (issue 8)."""
