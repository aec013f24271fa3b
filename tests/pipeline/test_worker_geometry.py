"""The worker checks each run's geometry on its first frame and records the verdict."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
from xrd_bluesky_mask.pipeline.worker import Worker
from xrd_bluesky_mask.simulate import preset, simulate_frame
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource

SHAPE = (384, 384)


@pytest.fixture(scope="module")
def off_centre():
    """A frame whose beam centre is far from the middle, so a flip moves its rings."""
    scene = preset("rings_spots").with_shape(SHAPE).model_copy(
        update={"beam_center_frac": (0.3, 0.35)})
    sim = simulate_frame(scene, seed=3, shape=SHAPE)
    return sim.image.astype(np.float32), sim.geometry.poni_text


def _run(frames, poni, uid):
    src, sink = InMemoryFrameSource(), InMemoryResultSink()
    worker = Worker(src, sink, masker=RingOutlierMasker(), niceness=0)
    spec = RunSpec(uid=uid, stream="primary", field="det", poni=poni, shape=SHAPE,
                   frames_expected=len(frames))
    for i, f in enumerate(frames):
        src.put(uid, "primary", "det", i, f)
    worker.submit(OpenRun(spec))
    for i in range(len(frames)):
        worker.submit(FrameItem(uid, "primary", "det", i))
    worker.submit(CloseRun(uid))
    worker.start()
    assert worker.close(120)
    return sink.metadata[uid]


def test_a_fitting_geometry_is_recorded_quietly(off_centre, caplog):
    frame, poni = off_centre
    with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask"):
        md = _run([frame, frame], poni, "fits")
    assert md["geometry_check"]["status"] == "ok", md["geometry_check"]
    assert not [r for r in caplog.records if "rings are much sharper" in r.getMessage()]


def test_a_flipped_frame_is_warned_about_once_and_recorded(off_centre, caplog):
    frame, poni = off_centre
    flipped = np.ascontiguousarray(frame[::-1])
    with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask"):
        md = _run([flipped, flipped, flipped], poni, "flipped")
    check = md["geometry_check"]
    assert check["status"] == "orientation" and check["best_orientation"] == "flipud", check
    warnings = [r.getMessage() for r in caplog.records if "flipped" in r.getMessage()
                and "run flipped" in r.getMessage()]
    assert len(warnings) == 1 and "flipud" in warnings[0], warnings
    assert md["status"] == "complete"  # the check advises; the frames are still masked
