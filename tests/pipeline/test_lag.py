"""The lag report's sizing: workers needed = frame rate x per-frame cost."""

from __future__ import annotations

import time

from xrd_bluesky_mask.pipeline.lag import COST_WINDOW, LagMeter


def test_the_report_says_how_many_workers_keep_up():
    meter = LagMeter(report_every_s=0.0)
    t0 = time.perf_counter()
    for i in range(5):
        meter.announced("run", i)
    assert meter.sizing("run") == {}  # no frame computed yet
    elapsed = time.perf_counter() - t0
    report = meter.finished("run", t0, cost_s=1.2, workers=2)
    assert report is not None and report["lag_frames"] == 4
    rate = 4 / elapsed  # 5 announcements, 4 intervals
    assert report["frame_rate_hz"] >= 0.99 * rate
    assert report["frame_cost_s"] == 1.2 and report["workers"] == 2
    assert report["workers_needed"] >= int(rate * 1.2) >= 2  # many frames per second here
    meter.finished("run", t0, cost_s=0.8)  # the cost is the median of recent frames
    assert meter.sizing("run")["frame_cost_s"] == 1.0
    meter.finished("run", t0, cost_s=None)  # a failed frame leaves it
    assert meter.sizing("run", workers=3)["frame_cost_s"] == 1.0
    assert meter.sizing("run", workers=3)["workers"] == 3


def test_a_first_frame_that_warms_up_does_not_count_for_a_dozen():
    """A Dask worker's first frame of a run also builds the engine and tables there (15 s
    against 1.5 s): the cost, and so the workers needed, follows the frames after it."""
    meter = LagMeter(report_every_s=0.0)
    t0 = time.perf_counter()
    for i in range(4):
        meter.announced("run", i)
    for cost in (15.0, 1.5, 1.6, 1.4, 1.5):
        meter.finished("run", t0, cost_s=cost)
    assert meter.sizing("run")["frame_cost_s"] == 1.5
    for _ in range(COST_WINDOW):  # the window moves on: the cost follows what frames cost now
        meter.finished("run", t0, cost_s=3.0)
    assert meter.sizing("run")["frame_cost_s"] == 3.0
