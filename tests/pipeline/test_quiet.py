"""``quiet_s="auto"``: the worker yields to the scan only while its frames come back to
back."""

from __future__ import annotations

import pytest

from xrd_bluesky_mask.errors import ConfigError
from xrd_bluesky_mask.pipeline.items import FrameItem
from xrd_bluesky_mask.pipeline.quiet import AUTO_QUIET_S
from xrd_bluesky_mask.pipeline.worker import Worker
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource


def _worker(quiet_s) -> Worker:
    return Worker(InMemoryFrameSource(), InMemoryResultSink(), masker="classical",
                  quiet_s=quiet_s)  # not started: submit only queues


def test_auto_waits_only_while_frames_come_back_to_back():
    worker = _worker("auto")
    assert worker.gaps.quiet() == 0.0  # nothing known yet: the first frame goes at once
    for i in range(3):  # frames announced back to back
        worker.submit(FrameItem("r", "primary", "det", i))
    assert worker.gaps.quiet() == AUTO_QUIET_S
    worker.gaps.announced.extend([10.0, 11.0, 12.0, 13.0, 14.0])  # one frame a second: at once
    assert worker.gaps.quiet() == 0.0
    worker.gaps.announced.extend([14.2, 14.4, 14.6, 14.8])  # five a second: yield to the scan
    assert worker.gaps.quiet() == AUTO_QUIET_S


def test_fixed_quiet_and_bad_values():
    assert _worker(0.5).gaps.quiet() == 0.5 and _worker(0).gaps.quiet() == 0.0
    with pytest.raises(ConfigError):
        _worker("sometimes")
