"""Tiled's push notifications (websocket subscriptions): is the server able to send them?

A Tiled server streams "a child was created", "metadata changed" and "an array grew" to
subscribers only when it runs a *streaming cache*: ``tiled serve catalog --temp`` and
`tiled.server.SimpleTiledServer` (the embedded server) turn an in-memory one on; a persistent
catalog needs ``--cache memory`` (what `~xrd_bluesky_mask.tiled.serve_process.TiledProcess` passes)
or ``streaming_cache: {uri: memory}`` in its config file, and a Redis URI where a facility runs
several server processes behind one address. Without it the server answers the websocket
with HTTP 500, and tiled's `Subscription.start_in_thread` then waits forever for a connection
that never comes; `check_streaming` asks first, with a timeout, and says what to change.
"""

from __future__ import annotations

from typing import Any

from ..errors import TiledAuthError, TiledConnectionError

__all__ = ["STREAMING_HELP", "check_streaming", "stream_url"]

#: How to turn streaming on, for messages.
STREAMING_HELP = (
    "start it with a streaming cache: `tiled serve catalog CATALOG --cache memory ...` "
    "(`tiled serve catalog --temp` and the embedded server have one), or "
    "`streaming_cache: {uri: memory}` in its config file (a redis:// URI where several "
    "server processes serve the catalog)"
)


def stream_url(node: Any) -> str:
    """The websocket address (``ws://`` or ``wss://``) of ``node``'s update stream."""
    import httpx

    context = node.context
    path = "".join(f"/{segment}" for segment in node.path_parts) or "/"
    scheme = "wss" if context.api_uri.scheme == "https" else "ws"
    prefix = context.api_uri.path.rstrip("/")  # ".../api/v1"
    url = context.api_uri.copy_with(scheme=scheme, path=f"{prefix}/stream/single{path}")
    return str(httpx.URL(str(url), params={"envelope_format": "msgpack"}))


def check_streaming(node: Any, *, timeout: float = 5.0) -> None:
    """Open and close ``node``'s update stream once, within ``timeout`` seconds.

    Raises
    ------
    TiledConnectionError
        The server has no streaming cache (HTTP 500 on the websocket), does not know the
        node, or does not answer; the message says how to start it with one.
    TiledAuthError
        The server refused the API key.
    """
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    url = stream_url(node)
    key = node.context.api_key
    headers = {"Authorization": f"Apikey {key}"} if key else {}
    where = str(node.context.api_uri)
    try:
        with connect(url, additional_headers=headers, open_timeout=timeout):
            return
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise TiledAuthError(f"the Tiled server at {where} refused the API key for its "
                                 f"update stream (HTTP {status}); pass a valid key") from None
        raise TiledConnectionError(
            f"the Tiled server at {where} cannot stream updates of "
            f"'{'/'.join(node.path_parts) or '/'}' (HTTP {status} on {url.split('?')[0]}): "
            f"{STREAMING_HELP}."
        ) from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise TiledConnectionError(
            f"no update stream from the Tiled server at {where} within {timeout:g} s "
            f"({type(exc).__name__}: {exc}). Is it running? If it is, {STREAMING_HELP}."
        ) from None
