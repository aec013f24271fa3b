"""Reprocessing on a real Dask `LocalCluster` (2 workers) gives what the local path gives."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import distributed
import numpy as np
import pandas as pd
import pytest

from tests.reprocess.test_reprocess import _series
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.reprocess import reprocess
from xrd_bluesky_mask.spots import FrameTables
from xrd_bluesky_mask.tiled.results import find_results, load_tables


@pytest.fixture(scope="module")
def dask_client():
    """Two worker processes of one thread each, as `xrd-mask reprocess --workers 2` starts them.
    Workers in this process (``processes=False``) start faster but share it with the in-process
    Tiled server, and once in a few runs the server's zarr reads stalled behind them."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_results_equal_the_local_path(stored_run, tiled_server, dask_client):
    uid, _, _ = stored_run
    client = tiled_server.client()
    node_path, _, _ = _series(client, "series", 3)
    tag = uuid.uuid4().hex[:8]
    local = reprocess(client, [uid, node_path], masker="classical",
                      root=f"derived/local_{tag}", progress=False)
    with distributed.get_task_stream(dask_client) as stream:
        fanned = reprocess(client, [uid, node_path], masker="classical",
                           root=f"derived/dask_{tag}", dask=dask_client, progress=False)
    assert fanned.mode == "dask, 2 workers" and fanned.ok and local.ok
    assert [r.processed for r in fanned.runs] == [r.processed for r in local.runs] == [4, 3]
    tasks = [t for t in stream.data if t["key"].startswith("process_chunk")]
    assert len(tasks) == 7  # one frame per task here: 7 frames over 2 workers
    for source in (uid, node_path):
        a = find_results(client, source, root=f"derived/local_{tag}")
        b = find_results(client, source, root=f"derived/dask_{tag}")
        assert b.metadata["status"] == "complete"
        assert b.metadata["frames_done"] == a.metadata["frames_done"]
        assert b.metadata["settings_id"] == a.metadata["settings_id"]
        np.testing.assert_array_equal(b["mask"].read(), a["mask"].read())
        pa, pb = a["pattern"].read(), b["pattern"].read()
        np.testing.assert_array_equal(pb["intensity"].values, pa["intensity"].values)
        np.testing.assert_array_equal(pb["sigma"].values, pa["sigma"].values)
        np.testing.assert_array_equal(pb["two_theta"].values, pa["two_theta"].values)
        # the tables: written by the driver from the rows the tasks returned
        ta, tb = load_tables(client, source, root=f"derived/local_{tag}"), \
            load_tables(client, source, root=f"derived/dask_{tag}")
        assert set(ta) == set(tb) == {"spots", "frames", "texture"}
        assert list(tb["frames"]["frame"]) == a.metadata["frames_done"]
        for name in ta:
            pd.testing.assert_frame_equal(tb[name], ta[name])
    again = reprocess(client, uid, masker="classical", root=f"derived/dask_{tag}",
                      dask=dask_client, progress=False)
    assert again.runs[0].status == "up_to_date"


def test_a_task_reads_and_writes_itself_and_returns_only_numbers(tiled_server):
    """What travels back to the driver: a few numbers and the table rows per frame, never
    frame data."""
    from xrd_bluesky_mask.azimuthal import IntegrationSettings
    from xrd_bluesky_mask.masking import get_masker
    from xrd_bluesky_mask.provenance import provenance
    from xrd_bluesky_mask.reprocess.cluster import ChunkTask, process_chunk
    from xrd_bluesky_mask.reprocess.sources import resolve_sources
    from xrd_bluesky_mask.sinks.tiled import TiledResultSink

    client = tiled_server.client()
    path, _, _ = _series(client, "series", 2)
    (src,) = resolve_sources(client, path)
    masker, settings = get_masker("classical"), IntegrationSettings()
    owner = TiledResultSink(client, root="derived/task")
    owner.open_run(src.source_id, provenance(
        src.source_id, stream="", field="", masker_settings=masker.settings(), poni=src.poni,
        integration=settings.model_dump(mode="json"), frames_expected=2, frame_shape=src.shape))
    task = ChunkTask(str(client.context.api_uri), client.context.api_key, src, "derived/task",
                     owner.result_path(src.source_id), settings)
    records = process_chunk(task, [1], masker)
    assert [r["index"] for r in records] == [1] and records[0]["error"] is None
    assert all(isinstance(v, int | float | type(None)) for r in records for k, v in r.items()
               if k != "tables")
    tables = records[0]["tables"]
    assert isinstance(tables, FrameTables) and tables.summary["spot_count"] == len(tables.spots)
    assert tables.summary["frame"] == 1 and (tables.spots["frame"] == 1).all()
    node = client[owner.result_path(src.source_id)]
    assert node["mask"][1].any() and not node["mask"][0].any()
    assert node.metadata["frames_done"] == []  # metadata is the driver's job


class StallsOnce(RingOutlierMasker):
    """The classical masker, except that its very first frame (in any worker process) stalls
    until the test releases it: a worker that stops answering."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def predict(self, frame, geometry, **kwargs):
        folder = Path(self.folder)
        try:
            os.close(os.open(folder / "stalled", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().predict(frame, geometry, **kwargs)
        deadline = time.monotonic() + 120
        while not (folder / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return super().predict(frame, geometry, **kwargs)


@pytest.mark.slow
@pytest.mark.timeout(300)  # a chunk waits out its 25 s deadline at least once
def test_a_stalled_chunk_is_submitted_again(tiled_server, dask_client, tmp_path, caplog):
    client = tiled_server.client()
    node_path, _, _ = _series(client, "series", 3)
    try:
        summary = reprocess(client, node_path, masker=StallsOnce(str(tmp_path)),
                            root=f"derived/stall_{uuid.uuid4().hex[:8]}", dask=dask_client,
                            progress=False, chunk_timeout=25)
    finally:
        (tmp_path / "release").touch()
    (run,) = summary.runs
    assert (tmp_path / "stalled").exists()  # one chunk did stall
    assert run.status == "complete" and run.processed == 3, run
    (warning,) = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    # the stalled worker's thread never came back by itself: it was restarted, not waited for
    assert "did not finish within 25 s; worker tcp://" in warning, warning
    assert "restarted; submitted again (try 2)" in warning, warning
    dask_client.wait_for_workers(2, timeout=60)
