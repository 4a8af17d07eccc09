"""CA connections that abort when closed: a request given up on dies with its connection.

    transport = aborting_transport(verify=context)     # an httpx transport
    http = httpx.Client(transport=transport, timeout=2.0)

Every socket gets ``SO_LINGER`` on with a zero timeout, so closing it (httpx
closes a connection whose call timed out or failed) resets it at once and the
kernel discards what was not yet acknowledged. With a graceful close the
kernel would keep retransmitting a sign request over a link that drops
packets and deliver it once the link heals: the CA would sign, long after the
connector gave up and the request was settled without it, a certificate
nobody delivers (an orphan; docs/chaos.md, "late requests"). Bytes the CA had
already received before the cut are the ordinary ambiguous case, which the
connector searches for (:mod:`connector.agent.late`).
"""

from __future__ import annotations

import socket
import ssl
import struct

from connector._transport import KeepAliveTransport

__all__ = ["ABORT_ON_CLOSE", "aborting_transport"]

# l_onoff=1, l_linger=0: close() sends RST and drops the send queue.
ABORT_ON_CLOSE: tuple[int, int, bytes] = (
    socket.SOL_SOCKET,
    socket.SO_LINGER,
    struct.pack("ii", 1, 0),
)


def aborting_transport(*, verify: ssl.SSLContext | bool = True) -> KeepAliveTransport:
    """An httpx transport whose connections abort (RST) rather than close gracefully."""
    return KeepAliveTransport(verify=verify, socket_options=[ABORT_ON_CLOSE])
