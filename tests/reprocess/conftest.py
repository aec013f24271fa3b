"""One small stored scan that the reprocessing tests read (the live fixtures it builds on come
from the `xrd_bluesky_mask.testing` plugin)."""

from __future__ import annotations

import uuid

import pytest

SHAPE = (128, 128)


@pytest.fixture(scope="session")
def stored_run(session):
    """A stored 4-frame 128x128 run, written by TiledWriter only (no masking), with
    ``sample`` = a fresh name: ``(uid, sample, det)``."""
    from bluesky.plans import count

    det = session.add_detector(shape=SHAPE, name="det", seed=11,
                               presets=("rings_spots", "spots_po"))
    sample = f"quartz-{uuid.uuid4().hex[:6]}"
    result = session.RE(count([det], num=4), **det.start_metadata(), sample=sample)
    return result.run_start_uids[0], sample, det
