"""Input and resource limits of the service: what any caller, anonymous included, can cost it.

    app.add_middleware(BodyGuard, max_bytes=1_048_576, timeout_s=20.0)
    app.exception_handler(RequestValidationError)(bounded_validation_error)
    cap_log_records(4096)                                # on every configured log handler

* :class:`BodyGuard` reads the whole body before the app sees it: more than
  ``max_bytes`` is a 413 whether declared (Content-Length) or streamed
  (chunked); a body not complete within ``timeout_s`` is a 408. Both close the
  connection. A JSON body (or one without a content type, which FastAPI
  would parse as JSON) must then pass :func:`strict_json_loads`, or it is a
  422 with a short reason, on every endpoint, before any route runs.
* :func:`strict_json_loads` refuses what Python's ``json`` lets through:
  ``NaN``, ``Infinity``, ``-Infinity``, numbers that overflow to infinity
  (``1e999``), integers longer than :data:`MAX_INT_DIGITS` digits, objects with
  more than :data:`MAX_OBJECT_MEMBERS` members and nesting deeper than Python
  can recurse. (FastAPI parses the body again after this check: at most
  1 MiB, a few milliseconds; the check covers every route, present and future.)
* :func:`bounded_validation_error`: a 422 lists at most :data:`MAX_ERRORS`
  errors, each cut short, and never echoes the input.
* :func:`cap_log_records`: no log line (nor traceback) longer than a cap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MAX_ERRORS",
    "MAX_INT_DIGITS",
    "MAX_OBJECT_MEMBERS",
    "BodyGuard",
    "bounded_errors",
    "bounded_validation_error",
    "cap_log_records",
    "strict_json_loads",
]

MAX_OBJECT_MEMBERS = 1000  # no request model has more than a few dozen fields
MAX_INT_DIGITS = 40  # 2**63 has 19 digits; anything longer is no id, epoch or count
MAX_ERRORS = 10  # validation errors listed in one 422
_FIELD_CHARS = 200  # each message or location part is cut to this


# -- the body: size and time ----------------------------------------------------------


class BodyGuard:
    """Plain ASGI middleware: the complete body within ``max_bytes`` and ``timeout_s``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 20.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(send, 400, "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await _refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
                    return
        try:
            async with asyncio.timeout(self.timeout_s):
                first = await self._read_body(receive)
        except TimeoutError:
            await _refuse(send, 408, f"request body not complete within {self.timeout_s:g} s")
            return
        if first is None:
            await _refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        if first["type"] != "http.request":
            return  # the client went away (or was closed) before its body was complete
        body = first.get("body", b"")
        if body and _is_json(scope):
            try:
                strict_json_loads(body)
            except json.JSONDecodeError as exc:
                refusal = bounded_errors(
                    [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": exc.msg}]
                )
                await _refuse(send, 422, refusal["detail"])
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()  # after the body: only http.disconnect is left

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> Message | None:
        """The body as one ``http.request`` message, or None when it is too large (a
        disconnect is passed on as it came)."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


def _is_json(scope: Scope) -> bool:
    """Would FastAPI parse this body as JSON (``application/json``, ``+json``, or no
    content type at all)?"""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = bytes(value).split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or (
                kind.startswith(b"application/") and kind.endswith(b"+json")
            )
    return True


async def _refuse(send: Send, status: int, reason: object) -> None:
    """A short JSON refusal that also closes the connection (the rest of the body,
    if any, is never read)."""
    body = json.dumps({"detail": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the JSON: strict parsing ---------------------------------------------------------


class _RefusedJsonError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _RefusedJsonError(f"{name} is not a JSON number (non-finite numbers are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedJsonError("number out of range (it is not finite as a double)")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _RefusedJsonError(f"integer longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _few_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_OBJECT_MEMBERS:
        raise _RefusedJsonError(f"object with more than {MAX_OBJECT_MEMBERS} members")
    return dict(pairs)


def strict_json_loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses non-finite numbers, huge integers, huge objects and
    deep nesting; every refusal is a :class:`json.JSONDecodeError` with a short
    reason and no copy of the input."""
    try:
        return json.loads(
            data,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_short_int,
            object_pairs_hook=_few_members,
        )
    except json.JSONDecodeError as exc:
        raise json.JSONDecodeError(exc.msg, "", exc.pos) from None
    except _RefusedJsonError as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise json.JSONDecodeError(f"not JSON: {str(exc)[:_FIELD_CHARS]}", "", 0) from None


# -- refusals: bounded ------------------------------------------------------------------


def _cut(value: object) -> str:
    text = str(value)
    return text if len(text) <= _FIELD_CHARS else text[:_FIELD_CHARS] + "..."


def bounded_errors(errors: Sequence[Any]) -> dict[str, Any]:
    """At most :data:`MAX_ERRORS` of pydantic's errors: location, message and type
    only (never the input), each part cut to a few hundred characters."""
    shown: list[dict[str, object]] = []
    for error in list(errors)[:MAX_ERRORS]:
        if not isinstance(error, dict):
            shown.append({"msg": _cut(error)})
            continue
        msg = _cut(error.get("msg", "invalid"))
        ctx = error.get("ctx")
        if error.get("type") == "json_invalid" and isinstance(ctx, dict) and "error" in ctx:
            msg = _cut(f"{msg}: {ctx['error']}")
        shown.append(
            {
                "loc": [_cut(part) for part in list(error.get("loc", ()))[:8]],
                "msg": msg,
                "type": _cut(error.get("type", "")),
            }
        )
    return {"detail": shown, "errors": len(errors), "shown": len(shown)}


async def bounded_validation_error(_: Request, exc: Exception) -> JSONResponse:
    """The app's 422: a few KB at most, whatever was sent."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [str(exc)]
    return JSONResponse(bounded_errors(errors), status_code=422)


# -- logs: bounded --------------------------------------------------------------------


class _CapRecords(logging.Filter):
    """Cuts a record's message (and traceback) to ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.limit:
            record.msg = message[: self.limit] + f"... [{len(message) - self.limit} chars cut]"
            record.args = None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if len(text) > 4 * self.limit:
                cut = len(text) - 4 * self.limit
                text = (
                    text[: 2 * self.limit]
                    + f"\n... [{cut} chars cut] ...\n"
                    + text[-2 * self.limit :]
                )
            record.exc_text = text
        return True


def cap_log_records(
    limit: int = 4096, loggers: Sequence[str] = ("", "uvicorn", "uvicorn.error")
) -> None:
    """Add the cap to every handler of ``loggers`` (the root logger and uvicorn's)."""
    cap = _CapRecords(limit)
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _CapRecords) for f in handler.filters):
                handler.addFilter(cap)
