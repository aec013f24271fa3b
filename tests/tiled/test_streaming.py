"""Which servers stream updates: the embedded one does, a catalog served without a streaming
cache does not, and `check_streaming` says so within its timeout instead of hanging."""

from __future__ import annotations

import json
import threading
import time

import pytest

from xrd_bluesky_mask.errors import TiledConnectionError
from xrd_bluesky_mask.testing import serve_tiled, wait_for
from xrd_bluesky_mask.tiled.streaming import check_streaming, stream_url


def test_the_embedded_server_streams_container_updates(tiled_client):
    check_streaming(tiled_client)
    assert stream_url(tiled_client).startswith("ws://127.0.0.1:")
    created: list[str] = []
    seen = threading.Event()

    def on_child(update) -> None:  # held weakly by tiled: this frame keeps it alive
        created.append(update.key)
        seen.set()

    sub = tiled_client.subscribe()
    sub.child_created.add_callback(on_child)
    sub.start_in_thread(None)
    try:
        key = f"streamed-{time.time_ns()}"
        tiled_client.create_container(key)
        wait_for(seen.is_set, 30, "the child-created notification")
        assert created == [key]
    finally:
        sub.disconnect()


@pytest.mark.slow
def test_a_catalog_without_streaming_cache_is_refused_with_the_fix(tmp_path):
    """A config without ``streaming_cache`` (as `tiled serve catalog` without ``--temp``):
    the server answers the websocket with HTTP 500; the error says how to turn it on."""
    catalog = tmp_path / "catalog"
    (catalog / "data").mkdir(parents=True)
    config = tmp_path / "no_streaming.json"
    config.write_text(json.dumps({"trees": [{"path": "/", "tree": "catalog", "args": {
        "uri": f"sqlite:///{catalog / 'catalog.db'}", "init_if_not_exists": True,
        "writable_storage": [str(catalog / "data")]}}]}))
    with serve_tiled(catalog, config=config) as server:
        client = server.client()
        t0 = time.monotonic()
        with pytest.raises(TiledConnectionError, match="streaming cache") as info:
            check_streaming(client, timeout=5.0)
        assert time.monotonic() - t0 < 10
        assert "HTTP 500" in str(info.value) and "streaming_cache: {uri: memory}" in str(info.value)


@pytest.mark.slow
def test_a_served_catalog_has_the_streaming_cache(tmp_path):
    """`TiledProcess` serves a catalog folder with the in-memory streaming cache (restarts
    on the same catalog: tests/bluesky/test_watch.py)."""
    from xrd_bluesky_mask.testing import TiledProcess

    server = TiledProcess(tmp_path / "tiled")
    assert json.loads(server.catalog_config().read_text())["streaming_cache"] == {"uri": "memory"}
    with server.start():
        check_streaming(server.client())
