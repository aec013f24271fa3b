"""End to end: RunEngine + simulated detector + TiledWriter + XRDMaskCallback + Tiled server,
wired by the session's `Session` (the `xrd_bluesky_mask.testing` fixtures)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from bluesky.plans import count

from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.azimuthal import integrate
from xrd_bluesky_mask.bluesky.session import Session
from xrd_bluesky_mask.bluesky.shutdown import stop_run_engine
from xrd_bluesky_mask.geometry import as_geometry
from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.protocols import MaskCode
from xrd_bluesky_mask.testing import FailingMasker
from xrd_bluesky_mask.tiled.frames import as_frame
from xrd_bluesky_mask.tiled.results import find_results, load_masks, load_patterns


def _scan(session, RE, det, masker, num):
    """``count([det], num)``: TiledWriter (always subscribed), then our callback after it."""
    with session.masking(masker, frame_timeout=20) as cb:
        result = RE(count([det], num=num), **det.start_metadata())
        assert session.stop_masking(120), "the callback did not finish"
    return result, cb


def test_count_masks_every_frame_and_survives_a_bad_one(session, run_engine, tiled_server,
                                                        make_det):
    masker = get_masker("classical")
    det = make_det(presets=("rings_spots", "spots_po"), seed=5, bad_frames={2: "zero"})
    result, cb = _scan(session, run_engine, det, masker, num=4)
    assert result.exit_status == "success"
    uid = result.run_start_uids[0]

    fresh = tiled_server.client()  # a new client finds the results by source uid
    node = find_results(fresh, uid)
    md = node.metadata
    assert md["status"] == "complete_with_errors", md["errors"]
    assert md["frames_done"] == [0, 1, 3]
    assert list(md["errors"]) == ["2"] and "FrameError" in md["errors"]["2"]
    assert md["field"] == "det" and md["stream"] == "primary" and md["frames_expected"] == 4
    assert md["masker"] == masker.settings()
    assert md["poni"] == det.generator.poni_text

    raw = fresh[uid]["primary"]["det"]
    assert raw.dtype == np.float32 and raw.shape == (4, 1, 96, 96)
    masks = load_masks(fresh, uid)
    patterns = load_patterns(fresh, uid)
    assert masks.dtype == np.uint8 and masks.shape == (4, 96, 96)
    assert list(patterns["frame"].values) == [0, 1, 3]
    geometry = as_geometry(md["poni"], (96, 96))
    for i in (0, 1, 3):
        frame = as_frame(raw[i])
        expected = predict_mask(frame, md["poni"], masker=masker)
        np.testing.assert_array_equal(masks[i] != 0, expected)
        want = integrate(frame, geometry, mask=expected)
        np.testing.assert_allclose(patterns.sel(frame=i).values, want.values.astype(np.float32),
                                   rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(patterns["two_theta"].values, want["two_theta"].values)
    assert (masks[2] == MaskCode.NOT_COMPUTED).all()  # the bad frame: no result, and says so
    assert np.isnan(load_patterns(fresh, uid, only_done=False).sel(frame=2)).all()
    timings = cb.records[uid].frames[0].timings
    assert {"read", "mask", "integrate", "write", "latency"} <= set(timings)

    run = fresh[uid]  # a BlueskyRun reaches its results too
    assert find_results(run).metadata["source_uid"] == uid


def test_a_failing_masker_never_aborts_the_plan(session, run_engine, tiled_server, make_det):
    det = make_det(presets="perfect", seed=1)
    result, _ = _scan(session, run_engine, det, FailingMasker(), num=2)
    assert result.exit_status == "success"
    md = find_results(tiled_server.client(), result.run_start_uids[0]).metadata
    assert md["status"] == "complete_with_errors"
    assert set(md["errors"]) == {"0", "1"} and "kaboom" in md["errors"]["1"]


def test_uint32_frames_keep_their_dtype(session, run_engine, tiled_server, make_det):
    det = make_det(presets="rings_spots", dtype="uint32", shape=(64, 64))
    result, _ = _scan(session, run_engine, det, "classical", num=1)
    uid = result.run_start_uids[0]
    client = tiled_server.client()
    assert client[uid]["primary"]["det"].dtype == np.uint32
    assert find_results(client, uid).metadata["status"] == "complete"


def test_live_demo_against_a_running_server(tiled_server, live_base, capsys):
    from xrd_bluesky_mask.apps.live import run_live_demo

    summary = run_live_demo(frames=2, size=64, masker="classical", tiled_uri=tiled_server.uri,
                            api_key=tiled_server.api_key, out_dir=live_base, progress=False)
    assert summary["status"] == "complete" and summary["exit_status"] == "success"
    assert [f["index"] for f in summary["frames"]] == [0, 1]
    assert summary["png"] and summary["png"].endswith(".png")
    # frame, zoom, patterns, and the spot count / masked share / texture index panels
    import matplotlib.image

    assert matplotlib.image.imread(summary["png"]).shape[1] == 4 * 6 * 110
    out = capsys.readouterr().out
    assert summary["run_uid"] in out and "from tiled.client import from_uri" in out
    # the printed export lines and curl command run as printed, against the server
    shell = out.split("or over HTTP, in a shell", 1)[1].split("\n\n", 1)[1].split("\n\n")[0]
    assert shell.startswith("export TILED=") and "TILED_API_KEY=" in shell
    done = subprocess.run(["bash", "-c", shell + " -s -f"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"status":"complete"' in done.stdout.replace(" ", "")
    assert find_results(tiled_server.client(), summary["run_uid"])["mask"].shape[0] == 2


def test_make_detector_needs_a_run_engine(tmp_path, monkeypatch):
    import bluesky.run_engine as bre

    from xrd_bluesky_mask.bluesky.devices import make_detector

    monkeypatch.setattr(bre, "_bluesky_event_loop", None)
    with pytest.raises(RuntimeError, match="Create the RunEngine"):
        make_detector(tmp_path, shape=(32, 32))


def test_a_session_stops_cleanly_and_gives_the_event_loop_back(tiled_server, raw_dir, session):
    """Its own RunEngine beside the test session's: closed twice (idempotent), its loop thread
    joined and its loop closed, and bluesky's global loop handed back to the RunEngine before."""
    from bluesky.run_engine import get_bluesky_event_loop, set_bluesky_event_loop

    set_bluesky_event_loop(session.RE.loop)
    with Session(tiled_server.client(), readable_storage=[raw_dir], runs_path="sessions/a",
                 metadata={"purpose": "test"}) as s:
        RE, thread = s.RE, s.RE._th
        assert get_bluesky_event_loop() is RE.loop
        det = s.add_detector(shape=(32, 32), presets="perfect")
        with s.masking("classical", quiet_s=0) as cb:
            result = RE(count([det], num=1), **det.start_metadata())
        assert cb.worker.pending == 0  # the block's end finished its work
        uid = result.run_start_uids[0]
        assert s.client["sessions"]["a"][uid].metadata["start"]["purpose"] == "test"
        assert find_results(s.client, uid).metadata["status"] == "complete"
    s.close()
    assert s.closed and s.RE is None and not thread.is_alive() and RE.loop.is_closed()
    assert get_bluesky_event_loop() is session.RE.loop  # e.g. for make_detector(run_engine=None)
    assert stop_run_engine(RE)  # again: nothing left to do


def test_a_session_that_cannot_connect_leaves_nothing_running():
    import threading

    from xrd_bluesky_mask.errors import TiledConnectionError
    from xrd_bluesky_mask.testing import free_port

    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(TiledConnectionError, match="no Tiled server answers"):
        Session(uri=f"http://127.0.0.1:{free_port()}/api/v1", api_key="abc123")
    with pytest.raises(ValueError, match="not both"):
        Session(object(), uri="http://127.0.0.1:1/api/v1")
    assert {t.ident for t in threading.enumerate()} <= before
