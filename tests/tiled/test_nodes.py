"""The one get-or-create helper for Tiled containers, against a real server."""

from __future__ import annotations

import uuid

from xrd_bluesky_mask.tiled.nodes import container_at, get_or_create


def test_a_path_is_created_level_by_level_once(tiled_client):
    top = f"nodes-{uuid.uuid4().hex[:8]}"
    node = container_at(tiled_client, f"{top}/a/b")
    assert node.item["id"] == "b" and "a" in tiled_client[top]
    node.update_metadata({"mark": 1})
    again = container_at(tiled_client, f"/{top}//a/b/")  # empty segments are skipped
    assert again.metadata["mark"] == 1  # the same node, not a new one


def test_get_or_create_says_whether_it_created(tiled_client):
    parent = container_at(tiled_client, f"nodes-{uuid.uuid4().hex[:8]}")
    first, created = get_or_create(parent, "x", metadata={"n": 1})
    assert created and first.metadata["n"] == 1
    # create_first: the creation is tried and answered 409, as when another process won
    second, created = get_or_create(parent, "x", create_first=True, metadata={"n": 2})
    assert not created and second.metadata["n"] == 1
