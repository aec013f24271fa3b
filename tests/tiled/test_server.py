"""The embedded server and `connect`: clear, fast errors for bad keys and unreachable servers."""

from __future__ import annotations

import time

import pytest

from xrd_bluesky_mask.errors import TiledAuthError, TiledConnectionError
from xrd_bluesky_mask.testing import free_port
from xrd_bluesky_mask.tiled.connect import connect
from xrd_bluesky_mask.tiled.server import start_local_server


def test_non_alphanumeric_key_is_refused_before_starting():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="alphanumeric"):
        start_local_server(api_key="right-key")
    assert time.perf_counter() - t0 < 1.0


def test_unreachable_uri_fails_fast_and_names_the_uri():
    uri = f"http://127.0.0.1:{free_port()}/api/v1"
    t0 = time.perf_counter()
    with pytest.raises(TiledConnectionError, match="no Tiled server answers") as info:
        connect(uri, "abc123", timeout=2.0)
    assert time.perf_counter() - t0 < 5.0
    assert uri in str(info.value) and "tiled serve" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_wrong_api_key_is_refused_clearly(tiled_server):
    with pytest.raises(TiledAuthError, match="refused the API key") as info:
        connect(tiled_server.uri, "wrongkey123")
    assert "401" in str(info.value) and tiled_server.uri in str(info.value)


def test_write_with_a_wrong_key_is_refused(tiled_server):
    from xrd_bluesky_mask.sinks.tiled import TiledResultSink

    client = connect(tiled_server.uri, tiled_server.api_key)
    client.context.api_key = "wrongkey123"
    with pytest.raises(TiledAuthError, match="refused the API key") as info:
        sink = TiledResultSink(client, root="derived/authtest")
        sink.open_run("uid-auth", {"source_uid": "uid-auth"})
    assert isinstance(info.value, PermissionError)


def test_key_from_uri_and_environment(tiled_server, monkeypatch):
    assert connect(tiled_server.uri_with_key).context.api_key == tiled_server.api_key
    monkeypatch.setenv("TILED_API_KEY", tiled_server.api_key)
    client = connect(tiled_server.uri)
    assert client.context.api_key == tiled_server.api_key


def test_servers_in_one_process_share_the_key_tiled_keeps_per_process(tiled_server):
    """Tiled's settings are one object per process: a second embedded server with its own key
    would lock the first one's clients out, so it takes the running key."""
    before = connect(tiled_server.uri, tiled_server.api_key)
    with start_local_server() as second:
        assert second.api_key == tiled_server.api_key
        assert list(connect(second.uri, second.api_key)) == []
        list(before)  # the first server still answers its own clients
        with pytest.raises(ValueError, match="one key per process"):
            start_local_server(api_key="other123")
    list(connect(tiled_server.uri, tiled_server.api_key))
