"""TLS settings, body chunks and answer decoding for the connector API (no state)."""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from connector.service_client._errors import (
    BadRequest,
    ConnectorRevokedError,
    ServiceUnavailable,
    StaleEpochError,
)

__all__ = ["chunks", "decode", "load_cert", "tls_context"]


def tls_context(verify: Any = True, cert: Any = None) -> ssl.SSLContext | bool:
    """An SSLContext trusting ``verify`` (a CA file, a context, True: the system's, False)
    and presenting ``cert`` (``(cert_file, key_file)`` or one PEM file) for mutual TLS.

    httpx ignores ``cert`` when ``verify`` is a path, so the context is built here.
    """
    if cert is None and isinstance(verify, bool):
        return verify
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif isinstance(verify, (str, os.PathLike)):
        context = ssl.create_default_context(cafile=os.fspath(verify))
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context()
    if cert is not None:
        load_cert(context, cert)
    return context


def load_cert(context: ssl.SSLContext, cert: Any) -> None:
    if isinstance(cert, (str, os.PathLike)):
        context.load_cert_chain(os.fspath(cert))
    else:
        context.load_cert_chain(os.fspath(cert[0]), os.fspath(cert[1]))


Item = dict[str, str | bool]
"""One item of a batch call: strings, and flags such as a result's ``uncertain``."""


def chunks(items: list[Item], limit: int) -> Iterator[list[Item]]:
    """Consecutive runs of ``items`` whose JSON stays under ``limit`` bytes (one item at least)."""
    chunk: list[Item] = []
    size = 0
    for item in items:
        # A flag's JSON (true/false) is no longer than its str() ("True"/"False").
        length = sum(len(k) + len(str(v)) + 8 for k, v in item.items())
        if chunk and size + length > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


def decode(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise ServiceUnavailable(f"{method} {path}: answer is not a JSON object", status=status)
        return body
    reason = _reason(body) or response.reason_phrase
    message = f"{method} {path}: HTTP {status}: {reason}"
    if status == 409:
        highest = body.get("highest_epoch") if isinstance(body, dict) else None
        raise StaleEpochError(message, highest_epoch=highest if isinstance(highest, int) else None)
    if status >= 500:
        raise ServiceUnavailable(message, status=status)
    if status == 403 and isinstance(body, dict) and body.get("connector_revoked") is True:
        raise ConnectorRevokedError(message, status=status)
    raise BadRequest(message, status=status)


def _reason(body: object) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if detail is not None:
            return json.dumps(detail)[:500]
    return ""
