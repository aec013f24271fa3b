"""The worker's results as Bluesky documents: a derived run per source run, an event per frame
with the frame's summary row, in the event-model schema (validated by compose_run itself and
by a RunRouter-style check of the sequence)."""

from __future__ import annotations

import numpy as np
import pytest

from xrd_bluesky_mask.bluesky.result_docs import DATA_KEYS, STREAM, ResultDocuments
from xrd_bluesky_mask.pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
from xrd_bluesky_mask.pipeline.worker import Worker
from xrd_bluesky_mask.simulate import simulate_frame
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource

SHAPE = (128, 128)


@pytest.fixture(scope="module")
def masked_run():
    """A worker run of three frames (classical masker) with `ResultDocuments` listening."""
    sims = [simulate_frame("rings_spots", seed=s, shape=SHAPE) for s in (1, 2, 3)]
    src, sink = InMemoryFrameSource(timeout=5.0), InMemoryResultSink()
    for i, sim in enumerate(sims):
        src.put("r1", "primary", "det", i, sim.image.astype(np.float32))
    docs: list[tuple[str, dict]] = []
    emitter = ResultDocuments()
    emitter.subscribe(lambda name, doc: docs.append((name, doc)))
    worker = Worker(src, sink, masker="classical", niceness=0)
    worker.add_listener(emitter)
    worker.start()
    worker.submit(OpenRun(RunSpec("r1", "primary", "det", sims[0].geometry.poni_text, SHAPE, 3)))
    for i in range(3):
        worker.submit(FrameItem("r1", "primary", "det", i))
    worker.submit(CloseRun("r1"))
    assert worker.wait(120)
    worker.close(10)
    return docs, sink


def test_one_derived_run_with_an_event_per_frame(masked_run):
    docs, _ = masked_run
    names = [name for name, _ in docs]
    assert names == ["start", "descriptor", "event", "event", "event", "stop"]
    start, descriptor, stop = docs[0][1], docs[1][1], docs[-1][1]
    assert start["original_run_uid"] == "r1"
    assert start["hints"] == {"dimensions": [[["frame"], STREAM]]}
    assert descriptor["name"] == STREAM and set(descriptor["data_keys"]) == set(DATA_KEYS)
    assert descriptor["run_start"] == start["uid"] and stop["run_start"] == start["uid"]
    assert stop["exit_status"] == "success" and stop["num_events"] == {STREAM: 3}
    assert [doc["seq_num"] for name, doc in docs if name == "event"] == [1, 2, 3]


def test_events_carry_the_frame_summary_the_sink_stores(masked_run):
    docs, sink = masked_run
    events = sorted((doc["data"] for name, doc in docs if name == "event"),
                    key=lambda d: d["frame"])
    assert [e["frame"] for e in events] == [0, 1, 2]
    for event in events:
        stored = sink.tables["r1"][event["frame"]].summary
        assert event["spot_count"] == stored["spot_count"] > 0
        assert event["masked_pct"] == pytest.approx(stored["masked_pct"])
        assert event["texture_index"] == pytest.approx(stored["texture_index"], nan_ok=True)


def test_a_failing_subscriber_is_logged_and_the_others_still_get_documents(caplog):
    emitter = ResultDocuments()
    got: list[str] = []

    def broken(name, doc):
        raise RuntimeError("plot failed")

    emitter.subscribe(broken)
    token = emitter.subscribe(lambda name, doc: got.append(name))
    emitter("r2", 0, {"frame": 0, "spot_count": 3, "masked_pct": 0.5, "texture_index": 0.1})
    emitter("r2", None, {"status": "failed"})
    assert got == ["start", "descriptor", "event", "stop"]
    assert "result-document callback failed" in caplog.text
    emitter.unsubscribe(token)
    emitter("r3", 0, {})
    assert got == ["start", "descriptor", "event", "stop"]
