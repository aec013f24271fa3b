"""Back-off retries through a real outage of a real (tiny) HTTP server."""

from __future__ import annotations

import http.server
import logging
import threading
import time

import httpx
import pytest
import stamina

from xrd_bluesky_mask.errors import TiledAuthError, TiledConnectionError
from xrd_bluesky_mask.sinks.retry import RetryingTiledSink
from xrd_bluesky_mask.testing import free_port
from xrd_bluesky_mask.tiled.retry import RetryingSource, retry_unreachable, unreachable


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
    """The server comes back right before the third call (not after some seconds), so what
    the test sees does not depend on how fast this machine is: two refused calls, growing
    waits between the calls, one warning, then success."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    servers: list[http.server.HTTPServer] = []
    calls = []

    def call():
        calls.append(time.monotonic())
        if len(calls) == 3:  # binding is what makes the port answer
            servers.append(http.server.HTTPServer(("127.0.0.1", port), _Ok))
            threading.Thread(target=servers[0].serve_forever, daemon=True).start()
        return httpx.get(url, timeout=1, trust_env=False).text

    try:
        with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask.tiled.retry"):
            assert retry_unreachable(call, "read", first_wait=0.2, max_wait=0.4) == "ok"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert len(calls) == 3
    assert calls[2] - calls[1] > calls[1] - calls[0]  # waits grow
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Tiled unreachable while trying to read" in m for m in messages) == 1
    assert any("reachable again" in m for m in messages)


def test_gives_up_after_the_deadline_and_passes_other_errors_at_once():
    url = f"http://127.0.0.1:{free_port()}/"
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


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "xrd_bluesky_mask.tiled.retry"]


def test_stamina_test_mode_retries_without_waiting(caplog):
    calls = []

    def down():
        calls.append(1)
        raise TiledConnectionError("no Tiled server answers")

    t0 = time.monotonic()
    with stamina.set_testing(True, attempts=3), pytest.raises(TiledConnectionError), \
            caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask.tiled.retry"):
        retry_unreachable(down, "write", first_wait=5.0)
    assert len(calls) == 3 and time.monotonic() - t0 < 2
    assert [m for m in _messages(caplog) if "unreachable" in m] == [
        "Tiled unreachable while trying to write (TiledConnectionError: no Tiled server "
        "answers); retrying with back-off (next try in 0.0 s)"]


def test_no_retry_when_there_is_no_time_to_retry(recwarn):
    calls = []

    def down():
        calls.append(1)
        raise TiledConnectionError("down")

    with pytest.raises(TiledConnectionError):
        retry_unreachable(down, "read", give_up_after=0)
    assert calls == [1] and not [w for w in recwarn if "timeout" in str(w.message)]


class _Flaky:
    """An inner source/sink whose first ``fails`` calls find the server down."""

    def __init__(self, fails: int):
        self.fails, self.calls = fails, []

    def _call(self, name, *args):
        self.calls.append((name, *args))
        if self.fails:
            self.fails -= 1
            raise TiledConnectionError("down")
        return name

    def read(self, *args):
        return self._call("read", *args)

    def write(self, *args, tables=None):
        return self._call("write", *args)

    def result_path(self, uid):
        return f"derived/{uid}"


def test_wrappers_retry_log_one_outage_and_pass_other_attributes(caplog):
    inner = _Flaky(2)
    sink, source = RetryingTiledSink(inner), RetryingSource(_Flaky(1))  # type: ignore[arg-type]
    with stamina.set_testing(True, attempts=5), \
            caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask.tiled.retry"):
        sink.write("u", 3, "codes", "pattern")
        assert source.read("u", "primary", "det", 0) == "read"
    assert inner.calls == [("write", "u", 3, "codes", "pattern")] * 3
    messages = _messages(caplog)
    assert sum("trying to write frame 3 of u" in m for m in messages) == 1
    assert sum("trying to read frame 0 of u" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 2
    assert sink.outage.count == 1 and sink.result_path("u") == "derived/u"
