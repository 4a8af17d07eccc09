"""A CA call given up on resets its connection: nothing it sent can arrive later."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from connector.ca._abort import aborting_transport


def test_a_timed_out_call_resets_its_connection_rather_than_closing_it() -> None:
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                try:
                    while conn.recv(65536):
                        pass  # never answers: the client times out and gives up
                    seen.append("orderly end of stream")
                except ConnectionResetError:
                    seen.append("reset")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = httpx.Client(transport=aborting_transport(), timeout=0.3)
        with client, pytest.raises(httpx.ReadTimeout):
            client.post(f"http://127.0.0.1:{port}/api/v1/cfssl/authsign", json={"x": 1})
        thread.join(timeout=10)
    assert seen == ["reset"]
