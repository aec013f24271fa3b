"""One `ResultSink` protocol for the storages and every wrapper, and one outage mechanism for
the live journal and reprocessing (`RetryingSink`)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from xrd_bluesky_mask.protocols import ResultSink
from xrd_bluesky_mask.sinks.base import SinkWrapper
from xrd_bluesky_mask.sinks.journal import Journal
from xrd_bluesky_mask.sinks.journaled import JournaledSink
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.sinks.retry import RetryingSink
from xrd_bluesky_mask.testing import wait_for

from .test_journal import Refusing, _codes, _feed, _pattern


def test_storages_and_wrappers_offer_the_whole_protocol(tmp_path):
    store = InMemoryResultSink()
    journaled = JournaledSink(store, Journal(tmp_path))
    try:
        for sink in (store, SinkWrapper(store), RetryingSink(store), journaled):
            assert isinstance(sink, ResultSink), type(sink).__name__
        assert isinstance(journaled.inner, RetryingSink) and journaled.inner.inner is store
    finally:
        journaled.close(5)


def test_a_wrapper_passes_on_what_it_does_not_change():
    store = InMemoryResultSink()
    sink = SinkWrapper(store)
    sink.open_run("r", {"source_uid": "r"})
    sink.write("r", 1, _codes(1), _pattern(1))
    sink.annotate("r", {"n_frames": 2})
    assert sink.done("r") == {1} and sink.done("never opened") == set()
    sink.close_run("r", "complete", {0: "not read"})
    md = store.metadata["r"]
    assert md["n_frames"] == 2 and md["status"] == "complete" and md["errors"] == {"0": "not read"}


def test_reprocessing_wrapper_gives_up_after_its_deadline():
    store = Refusing()
    sink = RetryingSink(store, give_up_after=0.2, first_wait=0.01, max_wait=0.02)
    with pytest.raises(ConnectionError):
        sink.open_run("r", {})
    assert len(store.calls) >= 2 and set(store.calls) == {"open"}  # retried, then raised


def test_the_journal_replays_through_the_same_outage_mechanism(tmp_path, caplog):
    """The journal's outage is logged by `RetryingSink`'s `Outage`, once, with what waits."""
    store = Refusing()
    sink = JournaledSink(store, Journal(tmp_path), first_wait=0.01, max_wait=0.02)
    with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask.tiled.retry"):
        _feed(sink, "r1", [0, 1])
        wait_for(lambda: len(store.calls) >= 3, 10, "the store to refuse the opening thrice")
        store.up = True
        assert sink.wait(30)
        sink.close(5)
    messages = [r.getMessage() for r in caplog.records if r.name == "xrd_bluesky_mask.tiled.retry"]
    down = [m for m in messages if "result store unreachable" in m]
    assert len(down) == 1
    assert f"frame results wait in the journal at {sink.journal.directory}" in down[0]
    assert sum("result store reachable again" in m for m in messages) == 1
    assert sink.inner.outage.count == 1
    np.testing.assert_array_equal(store.masks["r1"][1], _codes(1))
