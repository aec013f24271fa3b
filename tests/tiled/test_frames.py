"""FrameSource implementations: waiting for frames, timing out clearly."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import numpy as np
import pytest
import stamina

from xrd_bluesky_mask.errors import FrameUnavailable
from xrd_bluesky_mask.protocols import FrameSource, ResultSink
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource, TiledFrameSource


def test_implementations_satisfy_the_protocols(tiled_client):
    assert isinstance(TiledFrameSource(tiled_client), FrameSource)
    assert isinstance(InMemoryFrameSource(), FrameSource)
    assert isinstance(TiledResultSink(tiled_client, root="derived/protocol"), ResultSink)
    assert isinstance(InMemoryResultSink(), ResultSink)


def test_in_memory_source_waits_then_times_out():
    src = InMemoryFrameSource(timeout=0.2)
    threading.Timer(0.05, src.put, args=("u", "primary", "det", 0, np.ones((1, 4, 5)))).start()
    assert src.read("u", "primary", "det", 0).shape == (4, 5)
    with pytest.raises(FrameUnavailable, match="frame 1 of u/primary/det"):
        src.read("u", "primary", "det", 1)


def _growing_run(client, n: int):
    """A fake run ``<uid>/primary/det`` holding ``n`` frames of shape (1, 6, 7)."""
    uid = str(uuid.uuid4())
    stream = client.create_container(uid).create_container("primary")
    frames = np.arange(n * 42, dtype=np.float32).reshape(n, 1, 6, 7)
    arr = stream.write_array(frames[:1], key="det")
    for i in range(1, n):
        arr.patch(frames[i : i + 1], offset=(i,), extend=True)
    return uid, arr, frames


def test_tiled_source_waits_for_a_frame_being_written(tiled_client):
    uid, arr, frames = _growing_run(tiled_client, 2)
    src = TiledFrameSource(tiled_client, timeout=10, poll=0.01)
    np.testing.assert_array_equal(src.read(uid, "primary", "det", 1), frames[1, 0])
    late = np.full((1, 1, 6, 7), 7.0, dtype=np.float32)
    threading.Timer(0.3, arr.patch, args=(late,), kwargs={"offset": (2,), "extend": True}).start()
    t0 = time.perf_counter()
    np.testing.assert_array_equal(src.read(uid, "primary", "det", 2), late[0, 0])
    assert 0.2 < time.perf_counter() - t0 < 5


def test_tiled_source_gives_up_with_a_clear_error(tiled_client):
    uid, _, _ = _growing_run(tiled_client, 1)
    src = TiledFrameSource(tiled_client, timeout=0.3, poll=0.01)
    with pytest.raises(FrameUnavailable, match="batch_size=1") as info:
        src.read(uid, "primary", "det", 5)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(FrameUnavailable, match="KeyError"):
        src.read("no-such-run", "primary", "det", 0)


class _Runs(dict):
    """A container whose array lookups are counted (a lookup after `forget` is a new one)."""

    lookups = 0

    def __getitem__(self, path):
        self.lookups += 1
        return super().__getitem__(path)


class _Array:
    """Three registered frames; the first ``fails`` reads raise ``error()``."""

    shape = (3, 1, 4, 5)

    def __init__(self, fails: int, error):
        self.fails, self.error = fails, error

    def refresh(self):
        pass

    def __getitem__(self, index):
        if self.fails:
            self.fails -= 1
            raise self.error()
        return np.full((1, 4, 5), float(index))


def _reshape_422():
    request = httpx.Request("GET", "http://tiled/api/v1/array/full/u/primary/det")
    return httpx.HTTPStatusError("Can not reshape array of size 40 into shape (2,1,4,5)",
                                 request=request, response=httpx.Response(422, request=request))


def test_tiled_source_retries_a_reshape_422_with_fresh_clients():
    runs = _Runs({"u/primary/det": _Array(2, _reshape_422)})
    src = TiledFrameSource(runs, timeout=10, poll=0.01, direct=False)
    np.testing.assert_array_equal(src.read("u", "primary", "det", 1), np.full((4, 5), 1.0))
    assert runs.lookups == 3  # each failed attempt dropped the cached array client


def test_tiled_source_passes_other_errors_at_once_and_obeys_stamina_test_mode():
    runs = _Runs({"u/primary/det": _Array(1, lambda: ValueError("a bad frame"))})
    with pytest.raises(ValueError, match="a bad frame"):
        TiledFrameSource(runs, timeout=10, direct=False).read("u", "primary", "det", 0)
    assert runs.lookups == 1
    src = TiledFrameSource(_Runs(), timeout=600, poll=5, direct=False)
    t0 = time.monotonic()
    with stamina.set_testing(True, attempts=3), pytest.raises(FrameUnavailable,
                                                              match="3 attempts; last: KeyError"):
        src.read("u", "primary", "det", 0)
    assert time.monotonic() - t0 < 2  # no waits in stamina's test mode


class _Unreachable(dict):
    """A runs container whose server is down: every lookup raises ConnectError (counted)."""

    lookups = 0

    def __getitem__(self, path):
        self.lookups += 1
        raise httpx.ConnectError("[Errno 111] Connection refused")


def _detector_file(path, n: int) -> np.ndarray:
    """An HDF5 file like ophyd-async's: ``/entry/data/data`` of shape (n, 6, 7)."""
    import h5py

    frames = np.arange(n * 42, dtype=np.uint8).reshape(n, 6, 7)
    with h5py.File(path, "w", libver="latest") as fh:
        fh.create_dataset("/entry/data/data", data=frames, maxshape=(None, 6, 7))
    return frames


def _note(src, path, first: int, count: int, file_first: int = 0) -> None:
    src.note_file("u", "primary", "det", first, count, uri=f"file://localhost{path}",
                  parameters={"dataset": "/entry/data/data"}, mimetype="application/x-hdf5",
                  file_first=file_first)


def test_a_frame_the_documents_locate_is_read_from_its_file_without_tiled(tmp_path):
    frames = _detector_file(tmp_path / "det.h5", 4)
    src = TiledFrameSource(_Unreachable(), timeout=0.2)  # Tiled is down
    _note(src, tmp_path / "det.h5", 0, 2)
    _note(src, tmp_path / "det.h5", 2, 2, file_first=2)
    for i in range(4):
        np.testing.assert_array_equal(src.read("u", "primary", "det", i), frames[i])
    with pytest.raises(httpx.ConnectError):  # not located: Tiled is asked (and is down)
        src.read("u", "primary", "det", 4)
    src.forget("u")  # the run is finished: its files are forgotten too
    with pytest.raises(httpx.ConnectError):
        src.read("u", "primary", "det", 0)


def test_a_frame_whose_data_is_gone_fails_saying_where_it_looked(tmp_path):
    src = TiledFrameSource(_Runs(), timeout=0.2, poll=0.01)  # the server has no such run
    _note(src, tmp_path / "gone.h5", 0, 1)
    with pytest.raises(FrameUnavailable, match=r"gone\.h5 that the run's StreamResource names "
                                               "is not on this machine"):
        src.read("u", "primary", "det", 0)
    _detector_file(tmp_path / "short.h5", 1)
    _note(src, tmp_path / "short.h5", 1, 1, file_first=1)
    with pytest.raises(FrameUnavailable, match=r"short\.h5 holds no row 1"):
        src.read("u", "primary", "det", 1)


def test_reads_wait_out_an_unreachable_server_until_stopped():
    from xrd_bluesky_mask.tiled.retry import RetryingSource

    runs = _Unreachable()
    src = RetryingSource(TiledFrameSource(runs, timeout=0.2), give_up_after=None,
                         first_wait=0.01, max_wait=0.02, stopped=lambda: runs.lookups >= 5)
    with pytest.raises(httpx.ConnectError):
        src.read("u", "primary", "det", 0)
    assert runs.lookups == 5  # asked again and again, not given up at the first refusal
