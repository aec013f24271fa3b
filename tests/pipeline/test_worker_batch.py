"""The worker masks frames that are waiting together (one pipeline call) with the results of
one by one, and a batch holding a bad frame falls back to one by one."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from xrd_bluesky_mask.errors import ConfigError
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
from xrd_bluesky_mask.pipeline.worker import Worker
from xrd_bluesky_mask.protocols import MaskCode
from xrd_bluesky_mask.simulate import simulate_frame
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource

SHAPE = (128, 128)


class GatedSource(InMemoryFrameSource):
    """Notes when the reader has asked for the last frame: every earlier one is queued."""

    def __init__(self, last: int) -> None:
        super().__init__(timeout=2.0)
        self.last, self.all_read = last, threading.Event()

    def read(self, run_uid, stream, field, index):
        if index == self.last:
            self.all_read.set()
        return super().read(run_uid, stream, field, index)


class OpensAfterReads(UNetMasker):
    """Opens a run only once the reader has queued the run's frames (a gate, not a sleep)."""

    gate: threading.Event | None = None

    def settings(self):
        if self.gate is not None:
            assert self.gate.wait(60), "the reader never reached the last frame"
        return super().settings()


@pytest.fixture(scope="module")
def run_frames():
    sim = simulate_frame("rings_spots", seed=5, shape=SHAPE)
    img = sim.image.astype(np.float32)
    gaps = img * 2
    gaps[:, :32] = np.nan  # static pixels (a detector gap): the spot fractions' meanings differ
    frames = [img, np.zeros(SHAPE, np.float32), gaps, img * 0.5, img * 3, img * 1.5]
    return frames, sim.geometry.poni_text


def _run(frames, poni, masker, batch):
    src, sink = GatedSource(len(frames) - 1), InMemoryResultSink()
    masker.gate = src.all_read
    # room for every frame, so the reader queues them all while the run is being opened
    worker = Worker(src, sink, masker=masker, batch=batch, niceness=0, prefetch=len(frames) + 2)
    spec = RunSpec(uid=f"run-{batch}", stream="primary", field="det", poni=poni, shape=SHAPE,
                   frames_expected=len(frames))
    for i, f in enumerate(frames):
        src.put(spec.uid, "primary", "det", i, f)
    worker.submit(OpenRun(spec))
    for i in range(len(frames)):
        worker.submit(FrameItem(spec.uid, "primary", "det", i))
    worker.submit(CloseRun(spec.uid))
    worker.start()
    assert worker.close(120)
    return sink, worker.records[spec.uid], spec.uid


# frame 2's NaN gap is the point (static pixels): its warning is expected
@pytest.mark.filterwarnings("ignore::xrd_bluesky_mask.masking.preprocess.NonFiniteWarning")
def test_batches_match_one_by_one_and_survive_a_bad_frame(run_frames):
    frames, poni = run_frames
    masker = OpensAfterReads(device="cpu")
    one, rec_one, uid_one = _run(frames, poni, masker, 1)
    many, rec_many, uid_many = _run(frames, poni, masker, 4)
    for sink, uid in ((one, uid_one), (many, uid_many)):
        md = sink.metadata[uid]
        assert md["status"] == "complete_with_errors" and md["frames_done"] == [0, 2, 3, 4, 5]
        assert list(md["errors"]) == ["1"] and "FrameError" in md["errors"]["1"]
    # frames 0-3 were waiting together, held the bad frame, and went one by one; 4-5 batched
    batches = {i: rec_many.frames[i].timings.get("batch", 1) for i in (0, 2, 3, 4, 5)}
    assert batches[4] == batches[5] == 2 and batches[0] == 1, batches
    assert all(r.timings.get("batch", 1) == 1 for r in rec_one.frames.values() if r.timings)
    for i in (0, 2, 3, 4, 5):
        a, b = one.masks[uid_one][i], many.masks[uid_many][i]
        assert (a == b).mean() >= 0.9999
        np.testing.assert_allclose(many.patterns[uid_many][i].values,
                                   one.patterns[uid_one][i].values, rtol=1e-4, atol=1e-6)
    # a record's spot fraction means what MaskResult's means: of the frame's non-static pixels
    for i in (0, 2, 3, 4, 5):
        codes, record = one.masks[uid_one][i], rec_one.frames[i]
        static = codes == MaskCode.STATIC
        assert record.spot_fraction == pytest.approx((codes == MaskCode.SPOT).sum()
                                                     / (~static).sum())
        assert record.static_fraction == pytest.approx(static.mean())
    assert rec_one.frames[2].static_fraction == pytest.approx(0.25)


def test_batch_is_checked():
    with pytest.raises(ConfigError, match="batch"):
        Worker(InMemoryFrameSource(), InMemoryResultSink(), batch=0)
