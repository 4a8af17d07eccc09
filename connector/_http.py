"""httpx clients for the connector's own calls: no cookie jar, each URL parsed once.

    http = LeanClient(base_url="https://service.example", timeout=10.0, verify=context)
    http.request("POST", http.url_for("/api/v1/connector/heartbeat"), json=body)

    ca = LeanClient(timeout=5.0, transport=aborting_transport(verify=context))
    ca.post(ca.url_for("https://ca1:8888/api/v1/cfssl/authsign"), json=body)

The service and the CAs know a connector by its client certificate (and
CFSSL by its request token), never by a cookie, and no answer of theirs may
change what the next request carries. httpx still runs every response
through a cookie jar (``http.cookiejar``: 11 % of a call's CPU under
cProfile) and parses each call's URL string twice (merged with the base URL,
then for the request). A leader makes a CA call per certificate plus shares
of its batched service calls and polls, so both are paid
thousands of times an hour for nothing: :class:`LeanClient` keeps no cookies
(setting one is an error) and :meth:`LeanClient.url_for` parses a path once.
Unless given another, it sends through :class:`~connector._transport.KeepAliveTransport`
(HTTP/1.1 by the standard library, kept-alive connections), not httpcore.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping

import httpx

from connector._transport import KeepAliveTransport

__all__ = ["LeanClient"]

# Distinct paths worth keeping parsed; paths past it (an id in the path) are parsed each time.
_URL_CACHE_SIZE = 64


class _NoCookies(httpx.Cookies):
    """An always-empty jar: what a response sets is dropped unread."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class LeanClient(httpx.Client):
    """An :class:`httpx.Client` without cookies, with :meth:`url_for`."""

    def __init__(
        self,
        *,
        base_url: httpx.URL | str = "",
        timeout: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | httpx.Headers | None = None,
        follow_redirects: bool = False,
    ) -> None:
        super().__init__(
            base_url=base_url,
            timeout=timeout,
            verify=verify,
            transport=transport or KeepAliveTransport(verify=verify),
            headers=headers,
            follow_redirects=follow_redirects,
        )
        self._no_cookies = _NoCookies()
        self._urls: dict[str, httpx.URL] = {}
        self._urls_lock = threading.Lock()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("a LeanClient keeps no cookies")

    def url_for(self, path_or_url: str) -> httpx.URL:
        """The absolute URL of ``path_or_url``, parsed once.

        A relative one is appended to ``base_url`` as httpx itself does (the
        base's path, then the path without its leading slash).
        """
        with self._urls_lock:
            url = self._urls.get(path_or_url)
        if url is not None:
            return url
        url = httpx.URL(path_or_url)
        if url.is_relative_url:
            base = self.base_url
            url = base.copy_with(raw_path=base.raw_path + url.raw_path.lstrip(b"/"))
        with self._urls_lock:
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path_or_url] = url
        return url
