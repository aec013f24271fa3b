"""A live scan's frames fanned out over a real Dask `LocalCluster` (2 worker processes): the
same results as in-process, written in frame order and exactly once, through a killed Dask
worker and a scheduler that goes away. Real RunEngine, TiledWriter, Tiled server and pyFAI."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

import distributed
import numpy as np
import pytest
from bluesky.plans import count

from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.bluesky.callback import XRDMaskCallback
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.sinks.base import SinkWrapper
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.tiled.frames import TiledFrameSource, as_frame
from xrd_bluesky_mask.tiled.results import find_results, load_masks, load_patterns


def _cluster(n: int) -> tuple[distributed.LocalCluster, distributed.Client]:
    """``n`` worker processes of one thread, as ``--workers n`` starts them; the client is not
    this process's default Dask scheduler (Tiled's reads here stay here)."""
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", host="127.0.0.1")
    return cluster, distributed.Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def dask_client():
    cluster, client = _cluster(2)
    yield client
    client.close()
    cluster.close()


class Recording(SinkWrapper[TiledResultSink]):
    """The real Tiled sink, noting the frame index of every write it passes on (in the
    order the journal writes them)."""

    def __init__(self, inner: TiledResultSink, on_write=None) -> None:
        super().__init__(inner)
        self.written: list[int] = []
        self.on_write = on_write

    def write(self, source_uid, index, mask_codes, pattern, *, tables=None) -> None:
        super().write(source_uid, index, mask_codes, pattern, tables=tables)
        self.written.append(int(index))
        if self.on_write is not None:
            self.on_write(int(index))


def _callback(session, tmp_path: Path, root: str, masker, **kwargs) -> tuple[XRDMaskCallback,
                                                                         Recording]:
    client = session.runs
    sink = Recording(TiledResultSink(client, root=root), kwargs.pop("on_write", None))
    cb = XRDMaskCallback(source=TiledFrameSource(client, timeout=20), sink=sink, masker=masker,
                         quiet_s=0, journal=tmp_path / root.replace("/", "_"), **kwargs)
    return cb, sink


def _expected(client, uid: str, poni: str, n: int) -> list[np.ndarray]:
    raw = client[uid]["primary"]["det"]
    return [predict_mask(as_frame(raw[i]), poni, masker="classical") for i in range(n)]


def _scan(run_engine, det, callbacks, num: int) -> str:
    tokens = [run_engine.subscribe(cb) for cb in callbacks]
    try:
        result = run_engine(count([det], num=num), **det.start_metadata())
    finally:
        for token in tokens:
            run_engine.unsubscribe(token)
    assert result.exit_status == "success"
    return result.run_start_uids[0]


def test_fanned_out_results_equal_in_process_in_order_exactly_once(
        session, run_engine, make_det, tmp_path, dask_client):
    n = 6
    det = make_det(presets=("rings_spots", "spots_po"), seed=21)
    local, local_sink = _callback(session, tmp_path, "derived/fan_local", "classical")
    fanned, fanned_sink = _callback(session, tmp_path, "derived/fan_dask", "classical",
                                    dask=dask_client)
    with distributed.get_task_stream(dask_client) as stream:
        uid = _scan(run_engine, det, [local, fanned], n)
        assert local.close(120) and fanned.close(120)
    tasks = [t for t in stream.data if t["key"].startswith("compute_frame")]
    assert len(tasks) == n  # every frame on the cluster, none twice
    assert len({t["worker"] for t in tasks}) == 2  # over both workers
    assert local_sink.written == fanned_sink.written == list(range(n))
    client = session.runs
    a = find_results(client, uid, root="derived/fan_local")
    b = find_results(client, uid, root="derived/fan_dask")
    assert a.metadata["status"] == b.metadata["status"] == "complete"
    assert b.metadata["frames_done"] == list(range(n))
    np.testing.assert_array_equal(load_masks(client, uid, root="derived/fan_dask"),
                                  load_masks(client, uid, root="derived/fan_local"))
    pa = load_patterns(client, uid, root="derived/fan_local")
    pb = load_patterns(client, uid, root="derived/fan_dask")
    np.testing.assert_allclose(pb.values, pa.values, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(pb["two_theta"].values, pa["two_theta"].values)
    lag = fanned.records[uid]
    assert lag.status == "complete" and not lag.errors
    # the sizing report rode on the derived node: the cluster's 2 threads
    assert b.metadata["workers"] == 2 and b.metadata["workers_needed"] >= 1


class KillsItsDaskWorker(RingOutlierMasker):
    """The classical masker, except that the first frame it masks in a Dask worker process
    SIGKILLs that process (once across all processes: a file in ``folder`` says so)."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def predict(self, frame, geometry, **kwargs):
        try:
            distributed.get_worker()
        except ValueError:  # in the driver (a frame masked in-process): never kill it
            return super().predict(frame, geometry, **kwargs)
        try:
            os.close(os.open(Path(self.folder) / "killed", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().predict(frame, geometry, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


@pytest.mark.timeout(180)  # the killed worker's Nanny starts a new one (5-20 s on 2 cores)
def test_a_dask_worker_killed_mid_scan_loses_no_frame(session, run_engine, make_det, tmp_path,
                                                      dask_client):
    n = 6
    before = set(dask_client.run(os.getpid).values())
    det = make_det(presets=("rings_spots", "spots_po"), seed=22)
    cb, sink = _callback(session, tmp_path, "derived/fan_kill",
                         KillsItsDaskWorker(str(tmp_path)), dask=dask_client)
    uid = _scan(run_engine, det, [cb], n)
    assert cb.close(150)
    assert (tmp_path / "killed").exists()  # a worker did die with a frame in hand
    assert sink.written == list(range(n))  # every frame once, in order
    record = cb.records[uid]
    assert record.status == "complete" and not record.errors, record.errors
    masks = load_masks(session.runs, uid, root="derived/fan_kill")
    for got, want in zip(masks, _expected(session.runs, uid, det.generator.poni_text, n),
                         strict=True):
        np.testing.assert_array_equal(got != 0, want)
    dask_client.wait_for_workers(2, timeout=60)
    assert set(dask_client.run(os.getpid).values()) != before  # the Nanny replaced it


@pytest.mark.timeout(180)
def test_the_scheduler_gone_mid_scan_falls_back_in_process(session, run_engine, make_det,
                                                           tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="xrd_bluesky_mask")
    n, held_at = 6, 3
    cluster, client = _cluster(1)
    closed = threading.Event()

    def close_scheduler(index: int) -> None:  # frame 0's result came from the cluster
        if not closed.is_set():
            cluster.sync(cluster.scheduler.close)
            closed.set()

    def hold(name, doc) -> None:  # subscribed first: frame 3 is announced after the close
        if name == "event" and doc["seq_num"] == held_at:
            assert closed.wait(60), "no result of frame 0 within 60 s"

    try:
        det = make_det(presets=("rings_spots", "spots_po"), seed=23)
        cb, sink = _callback(session, tmp_path, "derived/fan_gone", "classical", dask=client,
                             on_write=close_scheduler)
        uid = _scan(run_engine, det, [hold, cb], n)  # never raises into the RE
        assert cb.close(150)
    finally:
        client.close()
        with contextlib.suppress(Exception):  # its workers wait for the scheduler otherwise
            cluster.close(timeout=5)
    assert closed.is_set()
    assert sink.written == list(range(n))
    record = cb.records[uid]
    assert record.status == "complete" and not record.errors, record.errors
    assert cb.worker.fanout is not None and not cb.worker.fanout.active
    (warning,) = [r.getMessage() for r in caplog.records
                  if "Dask cluster unusable" in r.getMessage()]
    assert "no frame is lost" in warning
    masks = load_masks(session.runs, uid, root="derived/fan_gone")
    for got, want in zip(masks, _expected(session.runs, uid, det.generator.poni_text, n),
                         strict=True):
        np.testing.assert_array_equal(got != 0, want)


def test_a_run_turned_by_the_geometry_check_is_turned_on_the_cluster_too(dask_client):
    """``if_misoriented="apply"``: the Dask workers mask the run in the orientation that fits,
    as the in-process worker does; ``"refuse"``: no mask, on the cluster as here."""
    from xrd_bluesky_mask.pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
    from xrd_bluesky_mask.pipeline.worker import Worker
    from xrd_bluesky_mask.simulate import preset, simulate_frame
    from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
    from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource

    shape = (256, 256)
    scene = preset("rings_spots").with_shape(shape).model_copy(
        update={"beam_center_frac": (0.3, 0.35)})
    sim = simulate_frame(scene, seed=3, shape=shape)
    flipped = [np.ascontiguousarray(sim.image[::-1]).astype(np.float32)] * 3

    def run(**options):
        src, sink = InMemoryFrameSource(), InMemoryResultSink()
        worker = Worker(src, sink, masker=RingOutlierMasker(), niceness=0, **options)
        spec = RunSpec(uid="r", stream="primary", field="det", poni=sim.geometry.poni_text,
                       shape=shape, frames_expected=3)
        for i, f in enumerate(flipped):
            src.put("r", "primary", "det", i, f)
        worker.submit(OpenRun(spec))
        for i in range(3):
            worker.submit(FrameItem("r", "primary", "det", i))
        worker.submit(CloseRun("r"))
        worker.start()
        assert worker.close(120)
        return sink

    here = run(if_misoriented="apply")
    with distributed.get_task_stream(dask_client) as stream:
        there = run(if_misoriented="apply", dask=dask_client)
    assert sum(t["key"].startswith("compute_frame") for t in stream.data) == 3
    assert there.metadata["r"]["geometry_check"]["orientation_applied"] == "flipud"
    assert there.metadata["r"]["status"] == "complete"
    for i in range(3):
        np.testing.assert_array_equal(there.masks["r"][i], here.masks["r"][i])
        assert there.masks["r"][i].any()
    refused = run(dask=dask_client)
    assert refused.metadata["r"]["status"] == "failed" and not refused.masks.get("r")


def test_a_dask_worker_s_first_frame_reports_its_warm_up_outside_its_cost(small_geometry, rng):
    """The first frame of a run on a Dask worker builds the engine and tables there: those
    seconds come back as ``warm``, not in the ``total`` the lag report sizes workers with;
    the next frame finds them built. The result is the in-process one."""
    import pickle

    from xrd_bluesky_mask.pipeline.fanout import Remote, RunTask, compute_frame
    from xrd_bluesky_mask.protocols import ExecutionPolicy

    task = RunTask("run", RingOutlierMasker(), small_geometry.poni_text,
                   small_geometry.shape, "", None, ExecutionPolicy(), tables=True)
    task = pickle.loads(pickle.dumps(task))  # as a Dask worker gets it: nothing built
    frame = rng.poisson(100, small_geometry.shape).astype(np.float32)
    first, second = compute_frame(task, frame), compute_frame(task, frame)
    assert isinstance(first, Remote) and isinstance(second, Remote)
    assert first.timings["warm"] > 0 and second.timings["warm"] == 0
    parts = ("mask", "integrate", "tables")
    assert first.timings["total"] == pytest.approx(sum(first.timings[k] for k in parts))
    np.testing.assert_array_equal(first.codes, second.codes)
    expected = predict_mask(frame, small_geometry.poni_text, masker="classical")
    np.testing.assert_array_equal(first.codes, expected)
