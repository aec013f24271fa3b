"""Connecting to any Tiled server by URI and API key, with clear errors, quickly.

`connect` turns the usual failures into `TiledConnectionError` / `TiledAuthError`: it probes
``/healthz`` with a short timeout first (`probe`), instead of sitting through the Tiled
client's ~24 s of retries; `tiled_errors` names a refused key as such.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import TiledAuthError, TiledConnectionError

__all__ = ["connect", "probe", "tiled_errors"]


def _split_key(uri: str) -> tuple[str, str | None]:
    """``uri`` without an ``api_key`` query parameter, and that key (or None)."""
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    key = query.pop("api_key", [None])[0]
    rest = urlencode(query, doseq=True)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), key


def _healthz_url(uri: str) -> str:
    parts = urlsplit(uri)
    path = parts.path.rstrip("/")
    prefix = path.split("/api", 1)[0] if "/api" in path else path
    return urlunsplit((parts.scheme, parts.netloc, prefix + "/healthz", "", ""))


def probe(uri: str, timeout: float = 3.0) -> None:
    """Check within ``timeout`` seconds that a Tiled server answers at ``uri``.

    Raises
    ------
    TiledConnectionError
        Nothing listens there, or it is not a Tiled server (no ``/healthz``).
    """
    import httpx

    url = _healthz_url(uri)
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise TiledConnectionError(
            f"no Tiled server answers at {uri} ({type(exc).__name__}: {exc}; probed {url} for "
            f"{timeout:g} s). Start one (`tiled serve catalog --temp --api-key KEY`, or let "
            "`xrd-mask demo` start the embedded server) or fix the URI."
        ) from None
    if response.status_code != 200:
        raise TiledConnectionError(
            f"{url} answered HTTP {response.status_code}, not 200: is {uri} a Tiled server? "
            "Pass the server's base URI, e.g. http://HOST:8000/api/v1."
        )


@contextlib.contextmanager
def tiled_errors(uri: str, action: str) -> Iterator[None]:
    """Turn Tiled's authentication failures during ``action`` into `TiledAuthError`."""
    from tiled.client.utils import ClientError

    try:
        yield
    except ClientError as exc:
        status = exc.response.status_code
        if status in (401, 403):
            detail = str(exc).splitlines()[0]
            raise TiledAuthError(
                f"the Tiled server at {uri} refused the API key while trying to {action} "
                f"(HTTP {status}: {detail}). Pass a valid key with write scope (api_key=... or "
                "the TILED_API_KEY environment variable)."
            ) from None
        raise
    except RuntimeError as exc:
        if "API key" in str(exc) or "api_key" in str(exc):
            raise TiledAuthError(
                f"the Tiled server at {uri} requires an API key and none was given. Pass "
                "api_key=... or set TILED_API_KEY."
            ) from None
        raise


def connect(uri: str, api_key: str | None = None, *, timeout: float = 3.0) -> Any:
    """A `tiled.client` root container on the server at ``uri``, failing fast and clearly.

    Parameters
    ----------
    uri
        Server URI, e.g. ``http://127.0.0.1:8000/api/v1`` (an ``?api_key=`` in it is used when
        ``api_key`` is None).
    api_key
        API key; None: the key in ``uri``, else the ``TILED_API_KEY`` environment variable.
    timeout
        Seconds to wait for the ``/healthz`` probe.

    Raises
    ------
    TiledConnectionError
        Nothing answers at ``uri`` within ``timeout`` seconds.
    TiledAuthError
        The server refused the key (HTTP 401), or needs one and none was given.
    """
    from tiled.client import from_uri

    base, key_in_uri = _split_key(uri)
    key = api_key or key_in_uri or os.environ.get("TILED_API_KEY") or None
    probe(base, timeout)
    with tiled_errors(base, "connect"):
        return from_uri(base, api_key=key)
