"""Results and raw runs left for a server that no longer answers: reported with their server,
age and the commands that end the wait; listed and discarded by ``xrd-mask replay``; never
removed otherwise. (Their replay into a real server: tests/bluesky/test_outage.py.)"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
import xarray as xr
from filelock import FileLock

from tests.bluesky.outage_helpers import run_documents as _run_documents
from tests.bluesky.outage_helpers import write_backup as _write
from xrd_bluesky_mask.bluesky import leftovers
from xrd_bluesky_mask.bluesky.backup import RunBackups
from xrd_bluesky_mask.bluesky.leftovers import discard, find_leftovers, report_leftovers
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.sinks.journal import Journal, read_origin, write_origin

GONE = "http://retired-host:8000/api/v1"


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Journal and backup roots of this test alone; the report's memory cleared."""
    monkeypatch.setenv("XRD_MASK_JOURNAL", str(tmp_path / "journal"))
    monkeypatch.setenv("XRD_MASK_RUN_BACKUP", str(tmp_path / "run-backup"))
    monkeypatch.setattr(leftovers, "_reported", set())
    monkeypatch.setattr(leftovers, "_in_use", set())
    return tmp_path / "journal", tmp_path / "run-backup"


def _left_journal(folder, frames: int, run: str = "run-old") -> Journal:
    journal = Journal(folder)
    write_origin(folder, f"{GONE}?api_key=secret", "derived/xrd_mask")
    journal.append("open", run, {"metadata": {}})
    pattern = xr.DataArray(np.ones(8, np.float32), dims=("radial",),
                           coords={"two_theta": ("radial", np.arange(8.0))})
    for i in range(frames):
        journal.append_write(run, i, np.zeros((4, 4), np.uint8), pattern)
    journal.release()
    return journal


def test_a_folder_records_its_server_without_the_key(tmp_path):
    write_origin(tmp_path, f"{GONE}/?api_key=secret", "/raw/")
    write_origin(tmp_path, "http://other:1/api/v1", "")  # the first record stays
    origin = read_origin(tmp_path)
    assert origin is not None and origin["uri"] == GONE and origin["container"] == "raw"
    assert "secret" not in (tmp_path / "origin.json").read_text()
    assert (tmp_path / "origin.json").stat().st_mode & 0o777 == 0o600


def test_leftovers_of_a_retired_server_are_reported_once_with_what_to_do(roots, caplog):
    journal_root, backup_root = roots
    _left_journal(journal_root / "a", 3)
    backups = RunBackups(backup_root / "b")
    write_origin(backups.directory, GONE, "raw")
    docs = _run_documents()
    _write(backups.directory / "x.jsonl", docs)
    old = time.time() - 30 * 86400  # a month ago
    for path in (backups.directory / "x.jsonl", *(journal_root / "a").rglob("*-*.*")):
        os.utime(path, (old, old))
    caplog.set_level(logging.WARNING, logger="xrd_bluesky_mask")
    found = report_leftovers()
    assert sorted(x.kind for x in found) == ["raw runs", "results"]
    results = next(x for x in found if x.kind == "results")
    assert results.items == 3 and results.runs == ("run-old",) and results.uri == GONE
    text = caplog.text
    assert f"3 frame results of run(s) run-old wait for {GONE} (results root derived/xrd_mask)"\
        in text
    assert f"1 raw runs of run(s) {docs[0][1]['uid'][:8]}" in text
    assert "30 days: is that server still there?" in text
    assert f"xrd-mask replay --tiled {GONE} --api-key KEY --root derived/xrd_mask" in text
    assert f"xrd-mask replay --discard {journal_root / 'a'}" in text
    caplog.clear()
    assert report_leftovers() == [] and not caplog.text  # once per process
    assert len(find_leftovers()) == 2  # reported, never removed


def test_a_folder_in_use_is_not_reported(roots):
    journal_root, _ = roots
    _left_journal(journal_root / "mine", 1)
    assert report_leftovers(exclude=[journal_root / "mine"]) == []


def test_replay_lists_every_folder_and_discards_only_when_asked(roots, capsys):
    journal_root, _ = roots
    _left_journal(journal_root / "a", 2)
    _left_journal(journal_root / "b", 1, run="run-other")
    assert main(["replay", "--list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "2 frame results of run(s) run-old" in out and "1 frame results" in out
    assert main(["replay", "--list", "--tiled", "http://elsewhere:8000/api/v1"]) == 0
    assert "nothing waits for http://elsewhere" in capsys.readouterr().out

    holder = FileLock(journal_root / "b" / "slot-0.lock")
    holder.acquire(timeout=0)  # a running session replays it: not removed
    try:
        with pytest.raises(BlockingIOError, match="in use by a running session"):
            discard(journal_root / "b")
    finally:
        holder.release()
    assert (journal_root / "b").is_dir()

    assert main(["replay", "--discard", str(journal_root / "a")]) == 0
    out = capsys.readouterr().out
    assert f"removed {journal_root / 'a'}: 2 frame results of run(s) run-old" in out
    assert not (journal_root / "a").exists()
    assert [x.folder.name for x in find_leftovers()] == ["b"]
    with pytest.raises(ValueError, match="not a results journal or a run-backup folder"):
        discard(roots[0].parent)
