"""`TiledRunWatcher` / ``xrd-mask watch``: runs written by another process (TiledWriter only)
are masked from Tiled's notifications alone, with the results the other paths write.

Real parts: ``tiled serve`` with the in-memory streaming cache (a child process), scans in a
child process (`tests.bluesky.watch_helpers`: RunEngine, TiledWriter, simulated detector
writing HDF5), the watcher's worker with the classical masker, pyFAI and the journal;
``reprocess`` gives the reference results. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import signal
import sys
import types

import numpy as np
import pandas as pd
import pytest

from tests.bluesky.remote_helpers import LoggedProcess
from tests.bluesky.watch_helpers import start_scan
from xrd_bluesky_mask.bluesky.watch import TiledRunWatcher
from xrd_bluesky_mask.testing import serve_tiled, wait_for
from xrd_bluesky_mask.tiled.results import find_results, load_masks, load_patterns, load_tables

NPT = 300


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A ``tiled serve`` process with the streaming cache, and the detectors' folder."""
    base = tmp_path_factory.mktemp("watch")
    raw = base / "raw"
    raw.mkdir()
    server = serve_tiled(base / "tiled", readable_storage=[raw], process=True)
    yield types.SimpleNamespace(server=server, raw=raw, base=base)
    server.close()


def _scan(served, n: int, seed: int, name: str) -> str:
    proc = start_scan(served.server, served.raw, n, seed, served.base / f"{name}.log")
    assert proc.wait(timeout=150) == 0, (served.base / f"{name}.log").read_text()
    out = (served.base / f"{name}.log").read_text()
    assert "done success" in out, out
    return out.split("uid ", 1)[1].split()[0]


def _integration():
    from xrd_bluesky_mask.azimuthal import IntegrationSettings

    return IntegrationSettings(npt=NPT)


def _complete(client, uid: str, root: str = "derived/xrd_mask"):
    try:
        node = find_results(client, uid, root=root)
    except KeyError:
        return None
    node.refresh()
    return node if node.metadata.get("status") == "complete" else None


def _assert_same_results(client, uid: str, n: int) -> None:
    """The watcher's results equal those ``reprocess`` writes with the same settings."""
    from xrd_bluesky_mask.reprocess import reprocess

    reprocess(client, uid, masker="classical", settings=_integration(), root="derived/check",
              progress=False)
    mine, ref = find_results(client, uid), find_results(client, uid, root="derived/check")
    assert mine.metadata["frames_done"] == list(range(n))
    assert mine.metadata["settings_id"] == ref.metadata["settings_id"]
    masks = load_masks(client, uid)
    assert masks.shape[0] == n and (masks == 1).any()  # spots found, one row per frame
    np.testing.assert_array_equal(masks, load_masks(client, uid, root="derived/check"))
    np.testing.assert_allclose(load_patterns(client, uid).values,
                               load_patterns(client, uid, root="derived/check").values,
                               rtol=1e-6, equal_nan=True)
    tables, ref_tables = load_tables(client, uid), load_tables(client, uid, root="derived/check")
    assert set(tables) == {"spots", "frames", "texture"} == set(ref_tables)
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table.reset_index(drop=True),
                                      ref_tables[name].reset_index(drop=True))


@pytest.mark.slow
@pytest.mark.timeout(400)  # a server start, two scan processes, a reprocess
def test_watch_catches_up_then_masks_a_scan_of_another_process_live(served, tmp_path):
    client = served.server.client()
    before = _scan(served, 3, seed=5, name="before")  # finished before the watcher starts
    lines: list[str] = []
    watcher = TiledRunWatcher(client, masker="classical", integration=_integration(),
                              journal=tmp_path / "journal", report=lines.append)
    submitted: list[tuple[str, str]] = []  # (item type, run uid) in the worker's order
    submit = watcher.worker.submit

    def noting(item):
        submitted.append((type(item).__name__, getattr(item, "run_uid", "")
                          or getattr(getattr(item, "spec", None), "uid", "")))
        return submit(item)

    watcher.worker.submit = noting
    try:
        watcher.start()  # subscribes, then catches up: `before` is queued at once
        assert before in watcher.active and watcher.catch_ups == 1
        proc = start_scan(served.server, served.raw, 4, 6, tmp_path / "live.log")

        def live_run_done() -> bool:
            watcher.step(0.2)
            return proc.poll() is not None and _complete(client, before) is not None and \
                any(_complete(client, u) is not None for u in watcher.followed)

        wait_for(live_run_done, 150, "both runs masked")
        assert proc.returncode == 0
        out = (tmp_path / "live.log").read_text()
        live = out.split("uid ", 1)[1].split()[0]
        assert watcher.followed == {live}  # by notifications, not found by a catch-up
        assert watcher.catch_ups == 1
        assert watcher.wait(60)
        wait_for(lambda: (watcher.step(), not watcher.active)[1], 30, "runs reported")
    finally:
        assert watcher.close(60)
    assert f"run {before[:8]}: masking primary/det (3 frames so far)" in lines
    assert any(line.startswith(f"run {before[:8]}: complete, 3 frames masked, 0 failed")
               for line in lines)
    assert any(line.startswith(f"run {live[:8]}: complete, 4 frames masked, 0 failed")
               for line in lines)
    # the live run's geometry was warmed from its start document, before it opened with its
    # first frame (the finished run, found by the catch-up, opens at once)
    mine = [kind for kind, uid in submitted if uid == live]
    assert mine[:2] == ["WarmGeometry", "OpenRun"], mine
    assert "WarmGeometry" not in [kind for kind, uid in submitted if uid == before]
    _assert_same_results(client, before, 3)
    _assert_same_results(client, live, 4)


def _written(client, uid: str, rows: int):
    """The results once the masks of frames ``0 .. rows-1`` are in Tiled, else None."""
    from xrd_bluesky_mask.protocols import MaskCode

    try:
        node = find_results(client, uid)
    except KeyError:
        return None
    if "mask" not in node or node["mask"].shape[0] < rows:
        return None
    mask = node["mask"]
    return node if all((mask[i] != MaskCode.NOT_COMPUTED).any() for i in range(rows)) else None


@pytest.mark.slow
@pytest.mark.timeout(500)  # a server start and restart, a scan process, the watch process
def test_watch_loses_nothing_when_tiled_restarts_mid_scan(served, tmp_path):
    """``xrd-mask watch`` as its own process; the only Tiled server is killed after two frames
    and started again (same catalog, same port) while the scan goes on into its backup."""
    server, n = served.server, 5
    watch = LoggedProcess(
        [sys.executable, "-m", "xrd_bluesky_mask.cli", "watch", "--tiled", server.uri,
         "--api-key", server.api_key, "--masker", "classical", "--npt", str(NPT),
         "--journal", str(tmp_path / "journal")],
        tmp_path / "watch.log", env={"TILED_RETRY_ATTEMPTS": "2", "TILED_RETRY_TIMEOUT": "2"})
    try:
        watch.wait_output("xrd-mask watch: watching", 120)
        gate = tmp_path / "gate"
        gate.mkdir()
        proc = start_scan(server, served.raw, n, 7, tmp_path / "scan.log", gate=gate,
                          pause_after=2)
        wait_for(lambda: (gate / "paused").exists(), 120, "the scan to pause after 2 frames")
        uid = (tmp_path / "scan.log").read_text().split("uid ", 1)[1].split()[0]
        wait_for(lambda: _written(server.client(), uid, 2), 90, "the masks of frames 0 and 1")
        server.kill()
        (gate / "resume").touch()  # frames 2.. go to TiledWriter's backup
        watch.wait_output("does not answer", 60)
        server.start()  # the scan process replays its backup; the watcher catches up
        assert proc.wait(timeout=200) == 0, (tmp_path / "scan.log").read_text()
        client = server.client()
        node = wait_for(lambda: _complete(client, uid), 120, "the run complete after restart")
        assert "answers again" in watch.output()
        assert node.metadata["frames_done"] == list(range(n)) and node.metadata["errors"] == {}
    finally:
        code = watch.stop(signal.SIGINT, timeout=60)
    assert code == 0, watch.output()[-3000:]
    assert "stopped" in watch.output()
    _assert_same_results(client, uid, n)


def test_watch_on_an_empty_container_subscribes_catches_up_and_closes(tiled_client, tmp_path):
    """Against the session's embedded server (its streaming cache is on): nothing to catch up
    with, and closing returns with nothing left (no slow test needed for the basics)."""
    container = tiled_client.create_container(f"empty-{tmp_path.name[-12:]}")
    lines: list[str] = []
    with TiledRunWatcher(container, masker="classical", journal=tmp_path / "journal",
                         report=lines.append) as watcher:
        watcher.start()
        watcher.step(0.1)
        assert watcher.catch_ups == 1 and not watcher.active and not lines
        assert len(watcher.feed.subscriptions) == 2  # the container's updates, the runs' arrays
    assert watcher.waiting() == ""


def test_watch_without_a_server_says_how_to_name_one(monkeypatch, capsys):
    from xrd_bluesky_mask.cli import main

    monkeypatch.delenv("TILED_URI", raising=False)
    assert main(["watch", "--masker", "classical"]) == 2
    assert "no Tiled server given" in capsys.readouterr().err
