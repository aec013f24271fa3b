"""Back-off retries through a real outage of a real (tiny) HTTP server."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time

import httpx
import pytest

from xrd_bluesky_mask.errors import TiledAuthError, TiledConnectionError
from xrd_bluesky_mask.tiled.retry import retry_unreachable, unreachable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_what_counts_as_unreachable():
    request = httpx.Request("GET", "http://x")
    assert unreachable(httpx.ConnectError("refused", request=request))
    assert unreachable(TiledConnectionError("down"))
    assert not unreachable(TiledAuthError("bad key"))
    for status, expected in ((503, True), (502, True), (404, False), (401, False)):
        response = httpx.Response(status, request=request)
        exc = httpx.HTTPStatusError("x", request=request, response=response)
        assert unreachable(exc) is expected
    assert not unreachable(ValueError("a bad frame"))


def test_retries_with_back_off_until_the_server_is_back(caplog):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    servers = []

    def start() -> None:  # binding is what makes the port answer
        servers.append(http.server.HTTPServer(("127.0.0.1", port), _Ok))
        servers[0].serve_forever()

    starter = threading.Timer(1.2, start)
    calls = []

    def call():
        calls.append(time.monotonic())
        return httpx.get(url, timeout=1, trust_env=False).text

    starter.start()
    try:
        with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask.tiled.retry"):
            assert retry_unreachable(call, "read", first_wait=0.2, max_wait=0.4) == "ok"
    finally:
        starter.cancel()
        for server in servers:
            server.shutdown()
            server.server_close()
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) >= 3 and gaps[0] < gaps[1]  # waits grow
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Tiled unreachable while trying to read" in m for m in messages) == 1
    assert any("reachable again" in m for m in messages)


def test_gives_up_after_the_deadline_and_passes_other_errors_at_once():
    url = f"http://127.0.0.1:{_free_port()}/"
    t0 = time.monotonic()
    with pytest.raises(httpx.ConnectError):
        retry_unreachable(lambda: httpx.get(url, timeout=1, trust_env=False), "read",
                          give_up_after=0.6, first_wait=0.1)
    assert time.monotonic() - t0 < 3
    calls = []

    def bad_frame():
        calls.append(1)
        raise ValueError("frame is all zeros")

    with pytest.raises(ValueError):
        retry_unreachable(bad_frame, "read")
    assert calls == [1]
