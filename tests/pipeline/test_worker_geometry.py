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


def _run(frames, poni, uid, **options):
    md, _ = _run_with_sink(frames, poni, uid, **options)
    return md


def _run_with_sink(frames, poni, uid, **options):
    src, sink = InMemoryFrameSource(), InMemoryResultSink()
    worker = Worker(src, sink, masker=RingOutlierMasker(), niceness=0, **options)
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
    return sink.metadata[uid], sink


def test_a_fitting_geometry_is_recorded_quietly(off_centre, caplog):
    frame, poni = off_centre
    with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask"):
        md = _run([frame, frame], poni, "fits")
    assert md["geometry_check"]["status"] == "ok", md["geometry_check"]
    assert not [r for r in caplog.records if "rings are much sharper" in r.getMessage()]


def test_a_flipped_frame_is_warned_about_once_and_kept_when_asked(off_centre, caplog):
    frame, poni = off_centre
    flipped = np.ascontiguousarray(frame[::-1])
    with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask"):
        md = _run([flipped, flipped, flipped], poni, "flipped", if_misoriented="keep")
    check = md["geometry_check"]
    assert check["status"] == "orientation" and check["best_orientation"] == "flipud", check
    warnings = [r.getMessage() for r in caplog.records if "flipped" in r.getMessage()
                and "run flipped" in r.getMessage()]
    assert len(warnings) == 1 and "flipud" in warnings[0], warnings
    assert md["status"] == "complete"  # kept: the frames are masked as given


def test_a_flipped_run_is_refused_by_default_and_no_mask_is_written(off_centre, caplog):
    frame, poni = off_centre
    flipped = np.ascontiguousarray(frame[::-1])
    with caplog.at_level(logging.ERROR, logger="xrd_bluesky_mask"):
        md, sink = _run_with_sink([flipped, flipped], poni, "refused")
    assert md["status"] == "failed", md
    reason = md["errors"]["run"]
    assert "refused" in reason and "flipud" in reason and "--if-misoriented apply" in reason
    assert not sink.masks.get("refused"), "a refused run must not get a mask"
    assert [r for r in caplog.records if "refused" in r.getMessage()]


def test_a_flipped_run_is_masked_in_the_orientation_that_fits_when_asked(off_centre):
    """``apply``: the masks lie on the stored (flipped) frames, and equal the masks of the
    frames stored the right way round, flipped; the patterns and spot 2θ are the same."""
    frame, poni = off_centre
    flipped = np.ascontiguousarray(frame[::-1])
    md_ok, right = _run_with_sink([frame, frame], poni, "right")
    md, turned = _run_with_sink([flipped, flipped], poni, "turned", if_misoriented="apply")
    assert md["status"] == "complete" and md_ok["status"] == "complete"
    check = md["geometry_check"]
    assert check["orientation_applied"] == "flipud" and check["status"] == "ok", check
    assert check["first_verdict"]["status"] == "orientation"
    for i in (0, 1):
        mask = turned.masks["turned"][i]
        assert mask.any()
        np.testing.assert_array_equal(mask, right.masks["right"][i][::-1])
        np.testing.assert_allclose(turned.patterns["turned"][i].values,
                                   right.patterns["right"][i].values, rtol=1e-5)
        a, b = right.tables["right"][i].spots, turned.tables["turned"][i].spots
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(np.sort(b["row_px"]), np.sort(SHAPE[0] - 1 - a["row_px"]),
                                   atol=1e-6)
        np.testing.assert_allclose(np.sort(b["two_theta_deg"]), np.sort(a["two_theta_deg"]),
                                   atol=1e-6)


def test_an_unknown_choice_is_refused_at_once():
    from xrd_bluesky_mask.errors import ConfigError

    with pytest.raises(ConfigError, match="if_misoriented must be one of refuse, apply, keep"):
        Worker(InMemoryFrameSource(), InMemoryResultSink(), if_misoriented="flip")
