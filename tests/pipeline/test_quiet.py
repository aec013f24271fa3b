"""``quiet_s="auto"``: the worker yields to the scan only while frames arrive faster than it
computes them."""

from __future__ import annotations

import pytest

from xrd_bluesky_mask.errors import ConfigError
from xrd_bluesky_mask.pipeline.items import FrameItem
from xrd_bluesky_mask.pipeline.worker import AUTO_QUIET_S, Worker
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource


def _worker(quiet_s) -> Worker:
    return Worker(InMemoryFrameSource(), InMemoryResultSink(), masker="classical",
                  quiet_s=quiet_s)  # not started: submit only queues


def test_auto_waits_only_while_frames_outpace_the_computation():
    worker = _worker("auto")
    assert worker.quiet() == 0.0  # nothing announced yet: process at once
    for i in range(3):  # frames announced back to back
        worker.submit(FrameItem("r", "primary", "det", i))
    assert worker.quiet() == 0.0  # no frame computed yet: nothing says it falls behind
    worker._frame_s = 0.3  # a frame takes 0.3 s; they arrive microseconds apart
    assert worker.quiet() == AUTO_QUIET_S
    worker._frame_s = 0.0
    assert worker.quiet() == 0.0


def test_fixed_quiet_and_bad_values():
    assert _worker(0.5).quiet() == 0.5 and _worker(0).quiet() == 0.0
    with pytest.raises(ConfigError):
        _worker("sometimes")
