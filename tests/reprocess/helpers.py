"""A small stored scan that the reprocessing tests read (fixtures are in conftest)."""

from __future__ import annotations

import uuid

import pytest

SHAPE = (128, 128)


def scan(RE, client, det, num: int, **md) -> str:
    """``count([det], num)`` written to Tiled by TiledWriter only (no masking); the run uid."""
    from bluesky.plans import count
    from bluesky_tiled_plugins import TiledWriter

    token = RE.subscribe(TiledWriter(client, batch_size=1))
    try:
        result = RE(count([det], num=num), **det.start_metadata(), **md)
    finally:
        RE.unsubscribe(token)
    return result.run_start_uids[0]


@pytest.fixture(scope="session")
def stored_run(run_engine, tiled_server, raw_dir):
    """A stored 4-frame 128x128 run (``sample`` = a fresh name): ``(uid, sample, det)``."""
    from xrd_bluesky_mask.bluesky.devices import make_detector

    det = make_detector(raw_dir, run_engine=run_engine, shape=SHAPE, name="det", seed=11,
                        presets=("rings_spots", "spots_po"))
    sample = f"quartz-{uuid.uuid4().hex[:6]}"
    return scan(run_engine, tiled_server.client(), det, 4, sample=sample), sample, det
