"""An OpenBao (or Vault) API client: AppRole tokens, and failover across a cluster's addresses.

    client = OpenBaoClient("secondary", ["http://bao1:8200", "http://bao2:8200"],
                           AppRoleCredentials.from_files(role_id_file, secret_id_file))
    body = client._call("POST", "pki/sign/user-auth", timeout=2.0, json={...})  # with a token
    reply = client._send("GET", "pki/crl", timeout=2.0)    # no token: the raw answer
    node = client.writer_node(timeout=2.0)   # where a search reads (a renewal finds it if stale)
    client.reload_auth(spec)                               # new AppRole files, checked by a login
    client.close()

The base of :class:`connector.ca.OpenBaoCA`, which adds the PKI mount on top;
``name`` is the CA's name in every error raised.

Errors map to the common tree: a connection refused, 307 (a Raft standby
pointing at an active node that may be gone: never followed), 429, 503 and
"active node not found" are :class:`CAUnavailableError` and the next address
of the cluster is tried within the same call; when no node serves but one
answered 307 or "active cluster node not found", the cluster is electing a new
active node: :class:`CAElectingError`. Nothing was signed, so by default
(``failover_patience_s = 0``) the router goes to the template's next CA at
once, as for a CA that is down; a ``[[ca]]`` that sets a patience is waited
for that long first. A 500/502/504 after the request
was sent is ambiguous (the CA may have signed), and such a request stays with
this CA whatever the patience (``hold_lost_answers``: no certdb outlives the
cluster, so only the cluster can say whether it signed); 403 with a fresh token is
:class:`CAAuthError` (policy), 400 "not found" :class:`CANotFoundError`, any
other 4xx :class:`CARequestRejectedError`.

A call starts at the node that last answered, a read at the node that last
took a write: a standby (OpenBao 2.5 and later serve reads on standbys), or a
node that resumed from a hang still believing it is active, answers reads
from a copy that may be behind (docs/pki.md, "OpenBao clusters"), and such a
node redirects writes, so it never becomes the writer. One that took a request and
never answered (a hung node: its connections stay open and silent) is asked
last from then on, so the next call reaches the node its cluster elects in the
meantime; and connecting to a node gets only its share of the call's time, so
a node that accepts connections but never completes them cannot take it all.
A search (did the CA sign for this key?) reads at :meth:`writer_node` alone,
found by a token renewal when no node took a write in the last
:data:`WRITER_FRESH_S`: its "nothing issued" has
the request issued again, so it must not come from a stale copy.

Authentication is AppRole: a login gives a token, renewed at two thirds of
its lease and replaced by a new login when renewal is refused or a call is
answered 403 (a revoked or expired token). Secrets never reach a log line.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from connector._http import LeanClient
from connector.ca._abort import aborting_transport
from connector.ca._approle import AppRoleCredentials, Token, TokenAction, token_decision
from connector.ca._errors import (
    CAAuthError,
    CABadResponseError,
    CAElectingError,
    CAError,
    CANotFoundError,
    CAPermanentError,
    CARequestRejectedError,
    CARetryableError,
    CAUnavailableError,
)
from connector.ca._reload import AuthMaterialError, openbao_material

__all__ = ["RETRYABLE_STATUSES", "OpenBaoClient", "errors_text"]

log = logging.getLogger("pfxha.connector.ca")

# Answers that say "this node cannot serve now" (Raft election, sealed, rate limit):
# the request was not acted on, so the next address may be tried at once.
RETRYABLE_STATUSES = frozenset({307, 429, 503})
# Answers after which the CA may have acted: retryable, but ambiguous.
_AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
_NO_ACTIVE_NODE = "active cluster node not found"
# How long a node that took a write stays the one a search reads at without another
# write to confirm it: longer than a busy leader's gap between signs, far shorter
# than a node's hang and resumption (the cluster elects another in seconds).
WRITER_FRESH_S = 1.0
# Calls that change nothing: they start at the node that last took a write.
_READS = frozenset({"GET", "LIST", "HEAD"})


def errors_text(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:300]
    return f"HTTP {reply.status_code}"


class OpenBaoClient:
    """Authenticated calls to one OpenBao (or Vault) cluster, tried on each address."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        credentials: AppRoleCredentials,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError(f"CA {name}: at least one OpenBao address is required")
        self._name = name
        self.urls = tuple(u.rstrip("/") for u in urls)
        self._credentials = credentials
        self.timeout = timeout
        self._clock = clock
        self._http = LeanClient(
            timeout=timeout,
            transport=transport or aborting_transport(verify=verify),
            verify=verify,
            follow_redirects=False,
        )
        self._token: Token | None = None
        self._token_lock = threading.Lock()
        self._preferred = 0  # index of the address that answered last
        # Index of the address that last took a write (None: none since it failed us).
        # Reads start there: a standby, or a node that resumed from a hang still
        # believing it is active, answers reads from a copy that may be behind.
        self._writer: int | None = None
        self._written_at = float("-inf")  # when the writer last took a write (clock)

    @property
    def name(self) -> str:
        return self._name

    def reload_auth(self, spec: Mapping[str, Any]) -> tuple[str, ...]:
        """Re-read ``role_id_file`` and ``secret_id_file``; swap only if they log in.

        Refused (:class:`~connector.ca.AuthMaterialError`, old credentials kept): a
        file missing, empty or not 0600, or a login with the new pair that OpenBao
        refuses. A cluster that cannot be reached cannot say: the new pair is taken
        (the next call logs in with it). Returns the settings re-read.
        """
        credentials = openbao_material(spec)
        try:
            token: Token | None = self._login(self.timeout, credentials)
        except CAAuthError as exc:
            raise AuthMaterialError("secret_id_file", f"OpenBao refused it: {exc}") from None
        except CARetryableError:
            token = None  # unverified: the next call logs in with it
        with self._token_lock:
            self._credentials = credentials
            self._token = token
        return ("role_id_file", "secret_id_file")

    def close(self) -> None:
        self._http.close()

    # -- HTTP ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None,
        json: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        node: int | None = None,
    ) -> httpx.Response:
        """One call, tried on each address in turn while a node says "not me, not now".

        ``node``: that address alone (a search reads at :meth:`writer_node` only).
        """
        effective = self.timeout if timeout is None else timeout
        if effective <= 0:
            raise CAUnavailableError(
                "no time left for the call (deadline passed)", ca_name=self.name
            )
        deadline = self._clock() + effective
        problems: list[str] = []
        electing = False  # a node answered that the cluster has no active node now
        count = len(self.urls)
        reading = method in _READS
        start = self._writer if reading and self._writer is not None else self._preferred
        order = [node] if node is not None else [(start + step) % count for step in range(count)]
        for step, index in enumerate(order):
            left = deadline - self._clock()
            if left <= 0:
                break
            url = self._http.url_for(f"{self.urls[index]}/v1/{path}")
            # A hung node may accept a connection and never finish the handshake:
            # connecting gets this node's share of what is left, the rest stays
            # for the nodes after it (nothing was sent, so they may be asked).
            limits = httpx.Timeout(left, connect=left / (len(order) - step))
            try:
                reply = self._http.request(
                    method, url, json=json, content=content, headers=headers, timeout=limits
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problems.append(f"{self.urls[index]}: cannot connect ({type(exc).__name__})")
                continue
            except httpx.HTTPError as exc:
                # Sent, but no answer: the CA may have acted on it, so no other node
                # gets it now. The node goes last for the next call: a hung active
                # node keeps its connections open and silent while the rest of its
                # cluster elects another, and asking it first would wait out every
                # call until it wakes (the drill's ca-node-stall).
                self._preferred = (index + 1) % count
                if self._writer == index:
                    self._writer = None
                raise CAUnavailableError(
                    f"{self.urls[index]}: no answer: {exc!r}", ca_name=self.name, ambiguous=True
                ) from exc
            if reply.status_code in RETRYABLE_STATUSES:
                electing = electing or reply.status_code == 307
                where = reply.headers.get("location", "")
                problems.append(
                    f"{self.urls[index]}: HTTP {reply.status_code}"
                    + (f" to {where} (not followed)" if where else f": {errors_text(reply)}")
                )
                continue
            if reply.status_code in _AMBIGUOUS_STATUSES:
                text = errors_text(reply)
                if _NO_ACTIVE_NODE in text:
                    # A Raft election: nothing was done; another node may serve already.
                    electing = True
                    problems.append(f"{self.urls[index]}: HTTP {reply.status_code}: {text}")
                    continue
                raise CAUnavailableError(
                    f"{self.urls[index]}: HTTP {reply.status_code}: {text}",
                    ca_name=self.name,
                    code=reply.status_code,
                    ambiguous=True,
                )
            self._preferred = index
            if not reading and reply.status_code < 300:
                self._writer, self._written_at = index, self._clock()
            return reply
        message = "; ".join(problems) or "deadline reached"
        if electing:
            raise CAElectingError(f"cluster electing an active node: {message}", ca_name=self.name)
        raise CAUnavailableError(message, ca_name=self.name)

    def writer_node(self, *, timeout: float | None) -> int:
        """The node that takes writes now: where a search must read.

        The node that took a write in the last :data:`WRITER_FRESH_S`; otherwise
        (none yet, it went silent, or it has not written since) the token is
        renewed, a write that touches nothing the CA issued, and the node that
        takes it is the one. A node that resumed from a hang still believing it
        is active redirected that write (307) while it answered reads from a
        stale copy (docs/pki.md, "OpenBao clusters"); a writer that hung while
        this client sent it nothing may be such a node by now.
        :class:`CAUnavailableError` when no node takes it.
        """
        if self._fresh_writer() is None:
            self._current_token(timeout, write=True)
        writer = self._fresh_writer()
        if writer is None:
            raise CAUnavailableError(
                "no node took a write: cannot tell which node reads the cluster's state",
                ca_name=self.name,
            )
        return writer

    def _fresh_writer(self) -> int | None:
        writer = self._writer
        if writer is None or self._clock() - self._written_at > WRITER_FRESH_S:
            return None
        return writer

    def forget_writer(self, node: int) -> None:
        """``node`` failed a search's read: the next search looks for the writer again."""
        if self._writer == node:
            self._writer = None

    def _classify(self, reply: httpx.Response) -> CAError:
        text = errors_text(reply)
        status = reply.status_code
        if status in (401, 403):
            return CAAuthError(
                f"HTTP {status} {text}: the AppRole's policy must allow this call "
                f"(docs/pki.md, 'minimal policy')",
                ca_name=self.name,
                code=status,
            )
        if status == 404 or "not found" in text.lower():
            return CANotFoundError(text, ca_name=self.name, code=status)
        return CARequestRejectedError(f"HTTP {status}: {text}", ca_name=self.name, code=status)

    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None,
        json: Mapping[str, Any] | None = None,
        node: int | None = None,
    ) -> dict[str, Any]:
        """An authenticated call; one fresh login and retry when the token is refused."""
        for fresh in (False, True):
            token = self._current_token(timeout, force_login=fresh)
            reply = self._send(
                method,
                path,
                timeout=timeout,
                json=json,
                headers={"X-Vault-Token": token.value},
                node=node,
            )
            if reply.status_code == 403 and not fresh:
                log.info("ca=%s: token refused (HTTP 403); logging in again", self.name)
                continue
            if reply.status_code >= 400:
                raise self._classify(reply)
            if reply.status_code == 204 or not reply.content:
                return {}
            try:
                parsed = reply.json()
            except ValueError as exc:
                raise CABadResponseError(
                    f"HTTP {reply.status_code} with a body that is not JSON", ca_name=self.name
                ) from exc
            if not isinstance(parsed, dict):
                raise CABadResponseError("reply is not a JSON object", ca_name=self.name)
            return parsed
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the token -----------------------------------------------------------------------

    def _current_token(
        self, timeout: float | None, *, force_login: bool = False, write: bool = False
    ) -> Token:
        """The token to call with: kept, renewed when due, or a fresh login.

        ``write``: renew even a token that would be kept, so that getting it is a
        write (a renewal, or a login when that is refused): :meth:`writer_node`.
        """
        with self._token_lock:
            decision = token_decision(self._token, now=self._clock())
            action = TokenAction.LOGIN if force_login else decision.action
            if write and action is TokenAction.USE:
                action = TokenAction.RENEW
            if action is TokenAction.RENEW and self._token is not None:
                try:
                    self._token = self._renew(self._token, timeout)
                except CAPermanentError as exc:
                    log.info("ca=%s: token renewal refused (%s); logging in again", self.name, exc)
                    action = TokenAction.LOGIN
            if action is TokenAction.LOGIN:
                self._token = self._login(timeout)
            assert self._token is not None
            return self._token

    def _token_from(self, body: Mapping[str, Any], started: float) -> Token:
        auth = body.get("auth")
        value = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(auth, dict) or not isinstance(value, str) or not value:
            raise CABadResponseError("login answer carries no client token", ca_name=self.name)
        return Token(
            value=value,
            obtained_at=started,
            lease_s=float(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )

    def _login(self, timeout: float | None, credentials: AppRoleCredentials | None = None) -> Token:
        started = self._clock()
        credentials = credentials or self._credentials
        mount = credentials.mount
        reply = self._send(
            "POST", f"auth/{mount}/login", timeout=timeout, json=credentials.login_body()
        )
        if reply.status_code >= 400:
            raise CAAuthError(
                f"AppRole login at auth/{mount} refused (HTTP {reply.status_code}: "
                f"{errors_text(reply)}): check role_id_file and secret_id_file",
                ca_name=self.name,
                code=reply.status_code,
            )
        return self._token_from(reply.json(), started)

    def _renew(self, token: Token, timeout: float | None) -> Token:
        started = self._clock()
        reply = self._send(
            "POST",
            "auth/token/renew-self",
            timeout=timeout,
            json={},
            headers={"X-Vault-Token": token.value},
        )
        if reply.status_code >= 400:
            raise self._classify(reply)
        renewed = self._token_from(reply.json(), started)
        if renewed.lease_s < 0.5 * token.lease_s:
            # Capped by the max TTL: a fresh login gives a full lease.
            raise CAAuthError("renewal capped by the token's max TTL", ca_name=self.name)
        return renewed
