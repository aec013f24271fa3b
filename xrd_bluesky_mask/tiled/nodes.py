"""Get-or-create for Tiled containers: the one helper the result sink, the annotations and
the session use to reach a container that may not exist yet.

Tiled's ``create_container`` makes one level only (a key with "/" is a literal key) and
answers HTTP 409 when the key exists, also when another process created it a moment ago;
both are handled here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["conflict", "container_at", "get_or_create", "server_root"]


def conflict(exc: Exception) -> bool:
    """``exc`` is Tiled's HTTP 409 (the key exists)."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) == 409


def get_or_create(parent: Any, key: str, *, create_first: bool = False,
                  **kwargs: Any) -> tuple[Any, bool]:
    """``(parent[key], created)``: the container, created (one level, ``kwargs`` to
    `create_container`) if missing. ``create_first`` tries the creation first (one request
    when the key is usually new)."""
    from tiled.client.utils import ClientError

    if not create_first and key in parent:
        return parent[key], False
    try:
        return parent.create_container(key, **kwargs), True
    except ClientError as exc:
        if conflict(exc):  # exists (or created meanwhile)
            return parent[key], False
        raise


def container_at(client: Any, path: str) -> Any:
    """The container at ``path`` (``"a/b/c"``) under ``client``, created level by level."""
    node = client
    for segment in [s for s in path.split("/") if s]:
        node, _ = get_or_create(node, segment)
    return node


def server_root(client: Any) -> Any:
    """The server's root container, from any client node."""
    from tiled.client import from_context

    return from_context(client.context)
