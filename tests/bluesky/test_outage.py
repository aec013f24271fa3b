"""A Tiled outage never costs a scan or a frame: one ``tiled serve`` holds the raw runs and
the results, and is SIGKILLed mid-scan, then started again on the same catalog and port (with
the same key, or with another one).

Real parts throughout: a `Session` (RunEngine, TiledWriter with its backup, the masking
callback) on that server, ophyd-async's blob detector writing SWMR HDF5, ``xrd-mask replay``
in a child process killed with SIGKILL. The Tiled client's own retries are cut to two attempts
(tests/conftest.py) so that TiledWriter gives up on the dead server in about a second
rather than 24 s; every wait for a condition polls with a deadline. Longer outages (60 s,
5 minutes): benchmarks/bench_outage.py.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.bluesky.outage_helpers import assert_all_in_tiled, scan_killing_server
from xrd_bluesky_mask.bluesky.leftovers import find_leftovers
from xrd_bluesky_mask.bluesky.session import Session
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.testing import serve_tiled, wait_for


@pytest.mark.slow
@pytest.mark.timeout(240)  # a server start and a restart (5-15 s each on 2 cores), a scan
def test_a_tiled_outage_mid_scan_costs_no_scan_no_frame_and_wait_means_delivered(
        tmp_path, short_client_retries, caplog):
    caplog.set_level(logging.INFO, logger="xrd_bluesky_mask")
    n, kill_after = 10, 3
    raw = tmp_path / "raw"
    raw.mkdir()
    server = serve_tiled(tmp_path / "tiled", readable_storage=[raw], process=True)
    try:
        with Session(uri=server.uri, api_key=server.api_key, readable_storage=[raw],
                     backup_directory=tmp_path / "backup", replay_poll_s=2.0,
                     replay_max_wait=1.0) as s:
            with s.masking("classical", quiet_s=0, journal=tmp_path / "journal",
                           retry_max_wait=1.0) as cb:
                scan = scan_killing_server(s, server, n, kill_after)
                uid = scan.uid
                assert [b.uid for b in s.backups.files()] == [uid]  # type: ignore[union-attr]
                # every frame is masked during the outage (read from the detector file), its
                # result waiting in the journal; wait() does not claim delivery
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
                assert_all_in_tiled(server.client(), uid, n)
                assert not s.backups.files() and not s.waiting()  # type: ignore[union-attr]
    finally:
        server.close()
    logging.getLogger(__name__).info("outage %.1f s; all delivered %.1f s after Tiled's "
                                     "return", back - scan.killed_at, delivered)
    assert "replayed into Tiled from its backup" in caplog.text
    assert "reachable again" in caplog.text


def _replay_child(uri: str, api_key: str) -> subprocess.Popen[str]:
    """``xrd-mask -v replay`` in a child process (one line per operation written)."""
    code = "import sys; from xrd_bluesky_mask.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "-v", "replay", "--tiled", uri, "--api-key", api_key],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))


@pytest.mark.slow
@pytest.mark.timeout(300)  # two server starts, a scan, two replays (one in a child process)
def test_a_server_back_with_another_key_loses_nothing_and_a_killed_replay_is_finished_by_the_next(
        tmp_path, short_client_retries, caplog, capsys):
    """The server comes back with another API key: a clear error naming the key, the results
    and the raw run kept; ``xrd-mask replay`` with the new key is SIGKILLed while writing the
    results, and the next replay completes them, every frame exactly once."""
    caplog.set_level(logging.INFO, logger="xrd_bluesky_mask")
    n, kill_after = 12, 3
    raw = tmp_path / "raw"
    raw.mkdir()
    server = serve_tiled(tmp_path / "tiled", readable_storage=[raw], process=True)
    try:
        with Session(uri=server.uri, api_key=server.api_key, readable_storage=[raw],
                     replay_poll_s=1.0, replay_max_wait=1.0) as s:  # folders: "auto"
            with s.masking("classical", timeout=3, quiet_s=0, retry_max_wait=1.0) as cb:
                uid = scan_killing_server(s, server, n, kill_after).uid
                journal = cb.worker.journaled.journal  # type: ignore[union-attr]
                wait_for(lambda: journal.frames_waiting(uid) == n, 60, "every frame masked")
                server.api_key = "anotherkey0123"
                server.start()  # same catalog and port, another key
                wait_for(lambda: "refuses this process's API key" in caplog.text
                         and "refuses this session's API key" in caplog.text, 60,
                         "the results' and the raw run's replays to name the refused key")
                assert "Nothing is lost" in caplog.text and "--api-key KEY" in caplog.text
                assert not s.wait(0.5)  # nothing can be delivered with the old key...
                assert journal.frames_waiting(uid) == n  # ...and nothing is dropped
                assert not cb.records[uid].errors
        # the session has ended: both folders wait for this server, and say so
        mine = [x for x in find_leftovers() if x.uri and x.uri.rstrip("/") == server.uri]
        assert sorted(x.kind for x in mine) == ["raw runs", "results"]
        assert next(x for x in mine if x.kind == "results").items == n

        child = _replay_child(server.uri, server.api_key)  # the right key, at last
        seen = []
        assert child.stdout is not None
        for line in child.stdout:
            seen.append(line)
            if line.startswith("write run") and sum(x.startswith("write run")
                                                     for x in seen) == 3:
                child.send_signal(signal.SIGKILL)  # mid-replay of the results
                break
        child.wait(60)
        assert child.returncode == -signal.SIGKILL, "".join(seen)
        assert any(line.startswith("replayed run") for line in seen)  # the raw run first
        capsys.readouterr()
        assert main(["replay", "--tiled", server.uri, "--api-key", server.api_key]) == 0
        out = capsys.readouterr().out
        assert " 0 left in" in out, out
        assert_all_in_tiled(server.client(), uid, n)
        assert not [x for x in find_leftovers() if x.uri and x.uri.rstrip("/") == server.uri]
    finally:
        server.close()
