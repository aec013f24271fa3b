"""XRDMaskCallback with hand-made documents, an in-memory FrameSource and ResultSink."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from event_model import compose_run

from xrd_bluesky_mask.bluesky.callback import XRDMaskCallback
from xrd_bluesky_mask.documents import find_image_field, find_poni
from xrd_bluesky_mask.geometry import as_geometry
from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.simulate import simulate_frame
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.testing import FailingMasker, wait_for
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource

SHAPE = (64, 64)


@pytest.fixture(scope="module")
def scene():
    sim = simulate_frame("rings_spots", seed=3, shape=SHAPE)
    return sim.image, sim.geometry.poni_text


def _callback(masker="classical", **kw):
    src, sink = InMemoryFrameSource(timeout=2.0), InMemoryResultSink()
    return XRDMaskCallback(source=src, sink=sink, masker=masker, **kw), src, sink


def _feed_stream_run(cb, src, frames, poni=None, config_poni=None, n_per_datum=1):
    """Documents like ophyd-async's: stream_resource + stream_datum per frame, empty events."""
    run = compose_run(metadata={"num_points": len(frames), **({"xrd_mask_poni": poni}
                                                              if poni else {})})
    cb("start", run.start_doc)
    conf = {"det": {"data": {"det-poni": config_poni}, "timestamps": {"det-poni": 0.0},
                    "data_keys": {"det-poni": {"dtype": "string", "shape": [], "source": "s"}}}}
    desc = run.compose_descriptor(
        name="primary",
        data_keys={"det": {"shape": [1, *SHAPE], "dtype": "array", "dtype_numpy": "<f4",
                           "external": "STREAM:", "source": "file"},
                   "det-sum": {"shape": [], "dtype": "number", "source": "x",
                               "external": "STREAM:"}},
        configuration=conf if config_poni else {},
    )
    cb("descriptor", desc.descriptor_doc)
    res = run.compose_stream_resource(mimetype="application/x-hdf5", uri="file://localhost/x.h5",
                                      data_key="det", parameters={})
    cb("stream_resource", res.stream_resource_doc)
    uid = run.start_doc["uid"]
    for start in range(0, len(frames), n_per_datum):
        stop = min(start + n_per_datum, len(frames))
        for i in range(start, stop):
            src.put(uid, "primary", "det", i, frames[i][None])
        cb("stream_datum", res.compose_stream_datum(
            indices={"start": start, "stop": stop},
            seq_nums={"start": start + 1, "stop": stop + 1}, descriptor=desc.descriptor_doc))
        for i in range(start, stop):
            cb("event", desc.compose_event(data={}, timestamps={}, seq_num=i + 1))
    cb("stop", run.compose_stop())
    return uid


def test_importing_the_callback_does_not_import_torch():
    code = ("import sys, xrd_bluesky_mask.bluesky.callback\n"
            "print(sorted(m for m in ('torch', 'tiled', 'pyFAI', 'xarray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_find_image_field_and_poni():
    keys = {"x": {"shape": []}, "small": {"shape": [4, 4]}, "det": {"shape": [1, 64, 80]},
            "vec": {"shape": [100]}}
    assert find_image_field(keys) == "det"
    assert find_image_field(keys, "small") == "small"
    assert find_image_field(keys, "nope") is None
    assert find_image_field({"x": {"shape": []}}) is None
    desc = {"configuration": {"det": {"data": {"det-poni": "Distance: 1\n"}}}}
    assert find_poni({"xrd_mask_poni": "Distance: 2\n"}, desc) == ("Distance: 2\n",
                                                                   "start:xrd_mask_poni")
    assert find_poni({}, desc) == ("Distance: 1\n", "configuration:det.det-poni")
    assert find_poni({"xrd_mask_poni": "a"}, desc, "given") == ("given", "callback")
    assert find_poni({}, {}) == (None, "")


def test_stream_datum_run_masks_every_frame(scene):
    image, poni = scene
    frames = [image, image * 2, image * 0.5]
    cb, src, sink = _callback()
    uid = _feed_stream_run(cb, src, frames, config_poni=poni, n_per_datum=2)
    assert cb.wait(60)
    cb.close()
    md = sink.metadata[uid]
    assert md["status"] == "complete" and md["frames_done"] == [0, 1, 2]
    assert md["field"] == "det" and md["stream"] == "primary" and md["frames_expected"] == 3
    assert md["masker"]["masker"] == "classical" and md["poni"] == poni
    for i, frame in enumerate(frames):
        expected = get_masker("classical").predict(frame, as_geometry(poni, SHAPE))
        np.testing.assert_array_equal(sink.masks[uid][i] == 1, expected.spots)
        np.testing.assert_array_equal(sink.masks[uid][i] == 2, expected.static)
    assert cb.records[uid].spec.geometry_source == "configuration:det.det-poni"


def test_inline_events_and_a_bad_frame(scene):
    image, poni = scene
    cb, src, sink = _callback()
    run = compose_run(metadata={"xrd_mask_poni": poni})
    uid = run.start_doc["uid"]
    cb("start", run.start_doc)
    desc = run.compose_descriptor(name="primary", data_keys={
        "img": {"shape": list(SHAPE), "dtype": "array", "source": "sim"}})
    cb("descriptor", desc.descriptor_doc)
    for i, frame in enumerate([image, np.zeros(SHAPE, np.float32), image]):
        src.put(uid, "primary", "img", i, frame)
        cb("event", desc.compose_event(data={"img": frame}, timestamps={"img": 0.0},
                                       seq_num=i + 1))
    cb("stop", run.compose_stop())
    assert cb.wait(60)
    cb.close()
    md = sink.metadata[uid]
    assert md["status"] == "complete_with_errors"
    assert md["frames_done"] == [0, 2]
    assert list(md["errors"]) == ["1"] and "FrameError" in md["errors"]["1"]


def test_masker_errors_never_reach_the_caller(scene):
    image, poni = scene
    cb, src, sink = _callback(masker=FailingMasker())
    uid = _feed_stream_run(cb, src, [image, image], poni=poni)  # must not raise
    assert cb.wait(30)
    cb.close()
    md = sink.metadata[uid]
    assert md["status"] == "complete_with_errors"
    assert set(md["errors"]) == {"0", "1"} and "kaboom" in md["errors"]["0"]


def test_missing_geometry_marks_the_run_failed(scene):
    image, _ = scene
    cb, src, sink = _callback()
    uid = _feed_stream_run(cb, src, [image])
    assert cb.wait(30)
    cb.close()
    md = sink.metadata[uid]
    assert md["status"] == "failed" and "no detector geometry" in md["errors"]["run"]


def test_garbage_documents_are_logged_not_raised(caplog):
    cb, _, _ = _callback()
    cb("descriptor", {"uid": "d", "run_start": "unknown"})  # run never started: ignored
    cb("start", {"uid": "r", "time": 0})
    cb("descriptor", {"uid": "d2", "run_start": "r", "name": "primary"})  # no data_keys
    cb("event", {"descriptor": "d2"})
    cb("stop", {"run_start": "r"})
    cb("bogus", {})
    assert cb.wait(10)
    cb.close()
    assert any("error handling descriptor" in r.message for r in caplog.records)


class _Clock:
    """Stands in for the `time` of the worker's quiet gaps (`pipeline.quiet`): ``monotonic()``
    moves only when the test says so, ``sleep()`` yields for 2 ms of real time and counts the
    calls (so the test can see the worker waiting); everything else is the real `time`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        time.sleep(0.002)

    def __getattr__(self, name: str):
        return getattr(time, name)

    def waited(self, times: int = 3) -> None:
        """Return once the worker has gone round its wait ``times`` more times."""
        target = self.sleeps + times
        wait_for(lambda: self.sleeps >= target, 30, "the worker to wait for a quiet moment")


def test_worker_waits_while_documents_keep_coming(scene, monkeypatch):
    """quiet_s: no frame is processed until no document has come for ``quiet_s`` seconds.

    The worker's clock is a fake that moves only when told, so what counts as "quiet" is
    decided here, not by how fast this machine happens to be."""
    image, poni = scene
    cb, src, sink = _callback(quiet_s=0.3)
    clock = _Clock()
    monkeypatch.setattr(sys.modules[type(cb.worker.gaps).__module__], "time", clock)
    uid = _feed_stream_run(cb, src, [image], poni=poni)  # its documents come at t = 0
    clock.waited()
    clock.now += 0.2
    cb("event", {"descriptor": "elsewhere"})  # 0.2 s later, e.g. a baseline stream
    clock.waited()
    clock.now += 0.29  # 0.29 s without documents: not yet quiet
    clock.waited()
    assert not cb.records[uid].frames
    clock.now += 0.02  # 0.31 s: quiet
    assert cb.wait(30)
    cb.close()
    assert sink.metadata[uid]["frames_done"] == [0]


def test_a_start_document_with_the_poni_warms_the_geometry_before_the_first_frame():
    """With the PONI and frame shape in the start document, the engine and tables are built
    while the first frame is being exposed: the descriptor that opens the run comes with it."""
    shape = (48, 56)  # a geometry no other test warms
    poni = simulate_frame("rings_spots", seed=4, shape=shape).geometry.poni_text
    cb, _, _ = _callback(quiet_s=0)
    geometry = as_geometry(poni, shape, source="start:xrd_mask_poni")  # the run's, when opened
    masker = cb.worker.compute.masker()
    assert ("warm", True, id(masker)) not in geometry._cache
    run = compose_run(metadata={"xrd_mask_poni": poni,
                                "xrd_mask_detector": {"shape_px": list(shape)}})
    cb("start", run.start_doc)
    assert cb.worker.wait(60)
    assert ("warm", True, id(masker)) in geometry._cache  # no descriptor yet
    assert run.start_doc["uid"] not in cb.worker.compute.pipelines  # nor an opened run
    cb("stop", run.compose_stop())
    cb.close()


def test_a_start_document_without_a_usable_geometry_warms_nothing_and_fails_nothing(scene):
    _, poni = scene
    cb, _, _ = _callback(quiet_s=0)
    bad = compose_run(metadata={"xrd_mask_poni": "Distance: not a number\n"})
    cb("start", bad.start_doc)
    none = compose_run(metadata={})  # no PONI at all: nothing to warm
    cb("start", none.start_doc)
    assert cb.worker.wait(60)
    assert all(not record.run_errors for record in cb.worker.records.values())
    cb("stop", bad.compose_stop())
    cb("stop", none.compose_stop())
    cb.close()
