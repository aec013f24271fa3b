"""A Tiled outage never costs a scan or a frame: one ``tiled serve`` holds the raw runs and
the results, and is SIGKILLed mid-scan, then started again on the same catalog and port.

Real parts throughout: a `Session` (RunEngine, TiledWriter with its backup, the masking
callback) on that server, ophyd-async's blob detector writing SWMR HDF5. The Tiled client's
own retries are cut to two attempts (`tiled.client.utils.TILED_RETRY_ATTEMPTS`, read at each
request) so that TiledWriter gives up on the dead server in about a second rather than 24 s;
every wait for a condition polls with a deadline.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from bluesky.plans import count

from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.bluesky.session import Session
from xrd_bluesky_mask.testing import serve_tiled
from xrd_bluesky_mask.tiled.frames import as_frame
from xrd_bluesky_mask.tiled.results import find_results

SHAPE = (96, 96)


@pytest.fixture
def short_client_retries(monkeypatch):
    """Two attempts per Tiled request instead of ten (TiledWriter fails over in ~1 s)."""
    import tiled.client.utils

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_ATTEMPTS", 2)


@pytest.mark.slow
@pytest.mark.timeout(240)  # a server start and a restart (5-15 s each on 2 cores), a scan
def test_a_tiled_outage_mid_scan_costs_no_scan_no_frame_and_wait_means_delivered(
        tmp_path, short_client_retries, caplog):
    caplog.set_level(logging.INFO, logger="xrd_bluesky_mask")
    n, kill_after = 10, 3
    raw = tmp_path / "raw"
    raw.mkdir()
    server = serve_tiled(tmp_path / "tiled", readable_storage=[raw], process=True)
    killed: list[float] = []

    def outage(name, doc):  # after the third frame's event, the only Tiled server dies
        if name == "event" and doc["seq_num"] == kill_after and not killed:
            server.kill()
            killed.append(time.monotonic())

    try:
        with Session(uri=server.uri, api_key=server.api_key, readable_storage=[raw],
                     backup_directory=tmp_path / "backup", replay_poll_s=2.0,
                     replay_max_wait=1.0) as s:
            det = s.add_detector(shape=SHAPE, presets="rings_spots", seed=11)
            s.RE.subscribe(outage)
            with s.masking("classical", quiet_s=0, journal=tmp_path / "journal",
                           retry_max_wait=1.0) as cb:
                result = s.RE(count([det], num=n, delay=0.1), **det.start_metadata())
                # 1. the scan never dies because Tiled does
                assert killed and result.exit_status == "success"
                uid = result.run_start_uids[0]
                assert [b.uid for b in s.backups.files()] == [uid]  # type: ignore[union-attr]
                # 2. every frame is masked during the outage (read from the detector file),
                # its result waiting in the journal; 3. wait() does not claim delivery
                assert not cb.wait(1.0)
                journal = cb.worker.journaled.journal  # type: ignore[union-attr]
                assert journal.frames_waiting(uid) == n
                record = cb.records[uid]
                assert sorted(record.done) == list(range(n)) and not record.errors
                waiting = s.waiting()
                assert str(journal.directory) in waiting and str(tmp_path / "backup") in waiting
                assert "wait in the journal at" in caplog.text
                server.start()  # same catalog, same port
                back = time.monotonic()
                assert s.wait(120), s.waiting()
                delivered = time.monotonic() - back
                # delivered means in Tiled, now, with no further waiting
                client = server.client()
                run = client[uid]
                assert run.metadata["stop"]["exit_status"] == "success"
                assert run["primary"]["det"].shape == (n, 1, *SHAPE)
                node = find_results(client, uid)
                md = node.metadata
                assert md["status"] == "complete", md.get("errors")
                assert md["frames_done"] == list(range(n)) and md["frames_pending"] == 0
                masks = node["mask"][:]
                assert masks.shape == (n, *SHAPE)  # one result per frame, none twice
                frames = run["primary"]["det"]
                for i in range(n):
                    np.testing.assert_array_equal(
                        masks[i] != 0, predict_mask(as_frame(frames[i]), md["poni"],
                                                    masker="classical"))
                assert not s.backups.files() and not s.waiting()  # type: ignore[union-attr]
    finally:
        server.close()
    outage_s = back - killed[0]
    logging.getLogger(__name__).info("outage %.1f s; all delivered %.1f s after Tiled's "
                                     "return", outage_s, delivered)
    assert "replayed into Tiled from its backup" in caplog.text
    assert "reachable again" in caplog.text
