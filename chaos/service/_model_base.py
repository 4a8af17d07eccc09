"""The strict base every body of the service API derives from, its bounded field types,
and the refusal body.

    class ConnectorCall(Strict):          # strict types, unknown fields refused
        name: Id                          # bounded: a 422 with the reason before any handler
        epoch: LeaderEpoch
    RevocationTaskOut.from_row(row)       # a model from a DB row with the fields' names
    APIRouter(prefix="/api/v1/admin", responses=errors(400, 401, 404))   # refusals it documents

The bodies themselves are in :mod:`chaos.service.models` (imported as ``m``).
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from chaos.service.rules import MAX_EPOCH

__all__ = [
    "Epoch",
    "ErrorOut",
    "Health",
    "Id",
    "KeyType",
    "LeaderEpoch",
    "Name",
    "Pem",
    "Reason",
    "RegisterEpoch",
    "RequestState",
    "RevocationState",
    "ScopeName",
    "Serial",
    "Strict",
    "Template",
    "Usage",
    "errors",
]

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
# Bounded by rules.MAX_EPOCH (2**48): see docs/security.md. The register call
# takes any non-negative integer so that one above the bound is refused (and
# reported) as a forgery by the fencing gate rather than only by the schema.
Epoch = Annotated[int, Field(ge=0, le=MAX_EPOCH)]
LeaderEpoch = Annotated[int, Field(ge=1, le=MAX_EPOCH)]
RegisterEpoch = Annotated[int, Field(ge=1)]
Serial = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[0-9]+$")]
Pem = Annotated[str, Field(min_length=1, max_length=20_000)]
Reason = Annotated[str, Field(min_length=1, max_length=1000)]
KeyType = Literal["rsa2048", "rsa3072", "rsa4096", "p256", "p384"]
Template = Annotated[str, Field(min_length=1, max_length=200)]
Health = Literal["healthy", "warning", "unhealthy"]
RequestState = Literal["pending", "in_flight", "issued", "delivered", "installed", "failed"]
RevocationState = Literal["pending", "done"]
ScopeName = Literal["device", "user"]
Usage = Literal["current", "decrypt-only"]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Self:
        """The model from a DB row whose columns carry the fields' names."""
        return cls(**{name: row[name] for name in cls.model_fields})


class ErrorOut(BaseModel):
    """Every refusal: ``detail`` says why; fencing refusals add ``highest_epoch``."""

    detail: Any
    highest_epoch: int | None = None
    forgery_suspected: bool | None = None  # a register refused as a suspected forgery
    retry_after_s: float | None = None  # also as Retry-After (429)
    connector_revoked: bool | None = None  # 403: the calling connector was revoked


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the refusals a route can answer with."""
    text = {
        400: "Refused input the schema cannot express (a PFX that does not match its"
        " intent, an event n/a in this mode) or a call in the wrong state",
        401: "Credential missing or wrong: the admin bearer token, or a client"
        " certificate (mutual TLS) on the connector and device APIs",
        403: "Connector revoked by an admin, client certificate refused or its name"
        " does not match the call, key recovery on a service without an admin credential",
        404: "Unknown id",
        409: "Stale epoch (connector API), duplicate id (admin API), unusable stored PFX",
        413: "Request body too large",
        428: "Epoch not registered: register first",
        429: "Register beyond the epoch-advance budget (suspected forgery): retry after"
        " Retry-After seconds, or an admin accepts the epoch; key recovery beyond its"
        " rate limit",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}
