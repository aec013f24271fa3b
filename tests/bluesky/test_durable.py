"""Nothing lost in the live path: scans that stop early, a full journal, a Tiled outage of a
minute and a process killed with results in its journal.

Real parts throughout: the session's RunEngine with TiledWriter and the simulated detector,
`tiled serve` child processes for the results that go away, a child Python process that is
SIGKILLed. The raw runs live on the session's server; the results of the outage tests go to
a second server (``tiled serve``) that is killed and restarted, so TiledWriter is unaffected
and the scan runs on while the results wait in the journal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.plans import count

from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.bluesky.callback import XRDMaskCallback
from xrd_bluesky_mask.protocols import MaskCode
from xrd_bluesky_mask.sinks.journal import Journal
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.testing import serve_tiled, wait_for
from xrd_bluesky_mask.tiled.frames import TiledFrameSource, as_frame
from xrd_bluesky_mask.tiled.results import find_results

SHAPE = (96, 96)


def _stops_after(det, frames: int, announced: int):
    """A scan announcing ``announced`` frames that fails after ``frames`` (the beam is lost)."""

    @bpp.stage_decorator([det])
    @bpp.run_decorator(md={"num_points": announced, **det.start_metadata()})
    def plan():
        for _ in range(frames):
            yield from bps.trigger_and_read([det])
        raise RuntimeError("beam lost")

    return plan()


def test_a_scan_that_stops_early_says_so_and_keeps_only_its_frames(session, run_engine,
                                                                   tiled_server, make_det):
    det = make_det(presets="rings_spots", seed=7)
    with session.masking("classical", quiet_s=0) as cb, pytest.raises(RuntimeError,
                                                                       match="beam lost"):
        run_engine(_stops_after(det, 3, 8))
    (uid,) = cb.records
    node = find_results(tiled_server.client(), uid)
    md = node.metadata
    assert md["status"] == "aborted" and md["scan_exit_status"] == "fail"
    assert "beam lost" in md["scan_reason"]
    assert md["frames_expected"] == 8 and md["n_frames"] == 3 and md["frames_done"] == [0, 1, 2]
    assert node["mask"].shape == (3, *SHAPE)  # rows for the frames that exist, not 8
    assert node["pattern"]["intensity"].shape[0] == 3
    assert md["lag_frames"] == 0 and md["frames_pending"] == 0


def test_a_full_journal_costs_frames_with_a_clear_error_never_the_scan(session, run_engine,
                                                                       tiled_server, make_det,
                                                                       tmp_path):
    det = make_det(presets="rings_spots", seed=8)
    journal = Journal(tmp_path / "journal", max_bytes=SHAPE[0] * SHAPE[1] // 2)  # < 1 frame
    with session.masking("classical", quiet_s=0, journal=journal) as cb:
        result = run_engine(count([det], num=2), **det.start_metadata())
    assert result.exit_status == "success"
    uid = result.run_start_uids[0]
    md = find_results(tiled_server.client(), uid).metadata
    assert md["status"] == "complete_with_errors" and md["frames_done"] == []
    assert set(md["errors"]) == {"0", "1"}
    assert "journal" in md["errors"]["0"] and "is full" in md["errors"]["0"]
    assert f"xrd-mask reprocess {uid}" in md["errors"]["0"]
    masks = find_results(tiled_server.client(), uid)["mask"][:]
    assert masks.shape == (2, *SHAPE) and (masks == MaskCode.NOT_COMPUTED).all()
    assert cb.records[uid].journal_full


# -- outages of the results server ------------------------------------------------------------
@pytest.fixture(scope="module")
def results_server(tmp_path_factory):
    """A ``tiled serve`` process for results only, killed and restarted by the tests."""
    server = serve_tiled(tmp_path_factory.mktemp("results") / "tiled", process=True)
    yield server
    server.close()


def _check(raw_client, results_client, uid: str, n: int) -> None:
    """Every frame's result once: ``n`` rows, each the classical mask of its frame."""
    node = find_results(results_client, uid)
    md = node.metadata
    assert md["status"] == "complete", md["errors"]
    assert md["frames_done"] == list(range(n)) and md["frames_pending"] == 0
    masks = node["mask"][:]
    assert masks.shape == (n, *SHAPE)  # nothing written twice, nothing missing
    raw = raw_client[uid]["primary"]["det"]
    for i in range(n):
        np.testing.assert_array_equal(masks[i] != 0, predict_mask(as_frame(raw[i]), md["poni"],
                                                                  masker="classical"))


@pytest.mark.slow
@pytest.mark.timeout(300)  # a minute of outage, a server start and restart (10-30 s each)
def test_a_minute_without_tiled_mid_scan_loses_nothing(session, run_engine, tiled_server,
                                                       make_det, results_server, tmp_path,
                                                       caplog):
    n = 6
    det = make_det(presets="rings_spots", seed=9)
    killed: list[float] = []

    started: list[str] = []

    def made() -> bool:
        """The run's result arrays exist (a server SIGKILLed while tiled creates an array
        leaves its storage without its catalog entry, which no client can repair; the outage
        this test is about comes after)."""
        try:
            node = find_results(results_server.client(), started[0])
            return "pattern" in node and {"intensity", "sigma"} <= set(node["pattern"])
        except Exception:  # not there yet
            return False

    def outage(name, doc):  # after the second frame's event, the results server goes away
        if name == "start":
            started.append(doc["uid"])
        if name == "event" and doc["seq_num"] == 2 and not killed:
            wait_for(made, 60, "the result arrays made")
            results_server.kill()
            killed.append(time.monotonic())

    sink = TiledResultSink(results_server.client())
    token = run_engine.subscribe(outage)
    try:
        with session.masking("classical", quiet_s=0, sink=sink,
                             source=TiledFrameSource(session.runs),
                             journal=tmp_path / "journal", timeout=300) as cb:
            result = run_engine(count([det], num=n), **det.start_metadata())
            assert result.exit_status == "success"  # the scan never waits for the results
            uid = result.run_start_uids[0]
            journaled = cb.worker.journaled
            assert journaled is not None
            wait_for(lambda: cb.worker.pending == 0, 120, "every frame masked and journaled")
            assert journaled.journal.frames_waiting() >= n - 2
            wait_for(lambda: time.monotonic() - killed[0] >= 60, 90, "a minute of outage")
            assert journaled.journal.frames_waiting() >= n - 2  # still waiting, none dropped
            results_server.start()
    finally:
        run_engine.unsubscribe(token)
    _check(tiled_server.client(), results_server.client(), uid, n)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "wait in the journal" in messages and "reachable again" in messages


_CHILD = """
import json, pathlib, sys, time
from xrd_bluesky_mask.bluesky.callback import XRDMaskCallback
from xrd_bluesky_mask.tiled.frames import TiledFrameSource
from xrd_bluesky_mask.tiled.connect import connect
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
args = json.load(open(sys.argv[1]))
raw = connect(args["raw_uri"], args["raw_key"])
sink = TiledResultSink(connect(args["results_uri"], args["results_key"]))
cb = XRDMaskCallback(source=TiledFrameSource(raw), sink=sink, masker="classical", quiet_s=0,
                     journal=args["journal"])
print("connected", flush=True)
while not pathlib.Path(args["go"]).exists():  # the results server is being taken away
    time.sleep(0.05)
for name, doc in json.load(open(args["documents"])):
    cb(name, doc)
while cb.worker.pending or cb.worker.journaled.journal.frames_waiting() < args["frames"]:
    time.sleep(0.05)
print("journaled", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)  # a child process masking, a server killed and restarted
def test_a_killed_process_leaves_its_journal_to_the_next(session, run_engine, tiled_server,
                                                         make_det, results_server, tmp_path):
    """A child process masks a finished scan while the results server is down, is SIGKILLed
    with every result in its journal; the next callback on that journal writes them all."""
    n = 4
    det = make_det(presets="rings_spots", seed=10)
    documents: list = []
    token = run_engine.subscribe(lambda name, doc: documents.append((name, doc)))
    try:
        result = run_engine(count([det], num=n), **det.start_metadata())
    finally:
        run_engine.unsubscribe(token)
    uid = result.run_start_uids[0]
    (tmp_path / "docs.json").write_text(json.dumps(documents, default=str))
    args = {"raw_uri": tiled_server.uri.split("?")[0], "raw_key": tiled_server.api_key,
            "results_uri": results_server.uri, "results_key": results_server.api_key,
            "journal": str(tmp_path / "journal"), "documents": str(tmp_path / "docs.json"),
            "frames": n, "go": str(tmp_path / "go")}
    (tmp_path / "args.json").write_text(json.dumps(args))
    out = tmp_path / "child.log"
    with open(out, "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "args.json")],
                                 stdout=log, stderr=subprocess.STDOUT)

    def said(word: str) -> bool:
        assert child.poll() is None, f"the child exited:\n{out.read_text()[-3000:]}"
        return word in out.read_text()

    try:
        wait_for(lambda: said("connected"), 120, "the child to connect")
        results_server.kill()
        (tmp_path / "go").touch()
        wait_for(lambda: said("journaled"), 180, "the child to journal every result")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    left = Journal(tmp_path / "journal")
    assert left.frames_waiting() == n and left.directory.name == "slot-0"
    left.release()
    results_server.start()
    cb = XRDMaskCallback(source=TiledFrameSource(tiled_server.client()),
                         sink=TiledResultSink(results_server.client()), masker="classical",
                         journal=tmp_path / "journal")
    try:
        assert cb.wait(120), "the journal was not replayed"
    finally:
        cb.close()
    assert not any((tmp_path / "journal" / "slot-0").iterdir())
    node = find_results(results_server.client(), uid)
    assert node.metadata["status"] == "complete"
    _check(tiled_server.client(), results_server.client(), uid, n)


@pytest.mark.slow
@pytest.mark.timeout(300)  # a child process: a session, two scans; then a reprocess
def test_a_full_journal_disk_costs_no_scan_names_the_frames_and_reprocess_recovers_them(
        tmp_path, tiled_server, raw_dir, capsys):
    """The journal's disk is really full (a 512 KiB tmpfs filled up, tests/full_disk.py):
    the scan finishes, each of its frames is reported "not kept" with the disk named and the
    command that recovers it, no partial file is left, the derived node says so; once there is
    room the next scan is complete, and ``xrd-mask reprocess`` completes the first."""
    from pathlib import Path

    from tests.bluesky.outage_helpers import assert_all_in_tiled
    from tests.full_disk import run_on_small_disk
    from xrd_bluesky_mask.cli import main

    disk = tmp_path / "disk"
    disk.mkdir()
    script = Path(__file__).with_name("scan_on_full_disk.py")
    done = run_on_small_disk(disk, "512k", [str(script), str(disk), tiled_server.uri,
                                            tiled_server.api_key, str(raw_dir)], timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    full, freed = out["full"], out["freed"]
    assert full["exit"] == "success" and freed["exit"] == "success"  # the scans go on
    assert out["full_free_blocks"] == 0 and out["full_delivered"] and out["freed_delivered"]
    assert full["done"] == [] and sorted(full["errors"]) == ["0", "1", "2", "3"]
    for index, message in full["errors"].items():
        assert message.startswith("result not kept:") and "ENOSPC" in message
        assert f"frame {index} of run {full['uid']}" in message
        assert f"xrd-mask reprocess {full['uid']}" in message
    assert "cannot take frame" in done.stderr  # told in the log too
    assert freed["done"] == [0, 1, 2, 3]
    assert not [f for f in out["files"] if f.endswith(".tmp")]  # nothing half written

    client = tiled_server.client()
    md = find_results(client, full["uid"]).metadata
    assert md["status"] != "complete" and md["frames_done"] == []
    assert "ENOSPC" in json.dumps(md["errors"])
    assert_all_in_tiled(client, freed["uid"], 4)
    capsys.readouterr()
    assert main(["reprocess", full["uid"], "--tiled", tiled_server.uri, "--api-key",
                 tiled_server.api_key, "--masker", "classical", "--no-progress"]) == 0
    assert_all_in_tiled(client, full["uid"], 4)  # every frame once, after all
