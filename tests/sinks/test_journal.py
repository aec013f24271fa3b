"""The results journal on its own: kept on disk, replayed in order through refusals, replayed
by the next journal on the folder, bounded. (Against real Tiled servers: tests/bluesky/
test_durable.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xrd_bluesky_mask.errors import JournalFull
from xrd_bluesky_mask.sinks.journal import Journal
from xrd_bluesky_mask.sinks.journaled import JournaledSink
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.testing import wait_for

BINS = 16


def _pattern(i: int) -> xr.DataArray:
    tth = np.linspace(1, 30, BINS)
    return xr.DataArray(np.full(BINS, 10.0 + i, np.float32), dims=("radial",),
                        name="intensity",
                        coords={"two_theta": ("radial", tth, {"units": "deg"}),
                                "sigma": ("radial", np.full(BINS, 0.5))},
                        attrs={"units": "counts", "method": ("bbox", "csr", "cython")})


def _codes(i: int) -> np.ndarray:
    codes = np.zeros((40, 30), np.uint8)
    codes[i, :5] = 1
    return codes


class Refusing(InMemoryResultSink):
    """An in-memory store that is unreachable until ``up`` is set; counts what it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.calls = False, []

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if not self.up:
            raise ConnectionError("store down")

    def open_run(self, source_uid, metadata):
        self._check("open")
        super().open_run(source_uid, metadata)

    def write(self, source_uid, index, mask_codes, pattern, *, tables=None):
        self._check("write")
        super().write(source_uid, index, mask_codes, pattern, tables=tables)

    def close_run(self, source_uid, status, errors):
        self._check("close")
        super().close_run(source_uid, status, errors)


def _feed(sink, run: str, frames) -> None:
    sink.open_run(run, {"source_uid": run})
    for i in frames:
        sink.write(run, i, _codes(i), _pattern(i))
    sink.close_run(run, "complete", {})


def test_results_wait_on_disk_and_are_written_once_the_store_answers(tmp_path):
    store = Refusing()
    sink = JournaledSink(store, Journal(tmp_path), first_wait=0.01, max_wait=0.05)
    _feed(sink, "r1", [0, 1, 2])
    wait_for(lambda: len(store.calls) >= 3, 10, "the store to refuse the opening thrice")
    assert store.calls == ["open"] * len(store.calls)  # in order: nothing before the opening
    assert sink.journal.frames_waiting("r1") == 3
    assert len(list((tmp_path / "slot-0").glob("*-write.npz"))) == 3
    store.up = True
    assert sink.wait(30)
    sink.close(5)
    md = store.metadata["r1"]
    assert md["status"] == "complete" and md["frames_done"] == [0, 1, 2]
    assert md["frames_pending"] == 0
    np.testing.assert_array_equal(store.masks["r1"][2], _codes(2))
    assert list(store.patterns["r1"][1].attrs["method"]) == ["bbox", "csr", "cython"]
    np.testing.assert_allclose(store.patterns["r1"][1].values, 11.0)
    assert not any((tmp_path / "slot-0").iterdir())  # everything applied, nothing left


def test_the_next_journal_on_the_folder_replays_what_was_left(tmp_path):
    store = Refusing()
    first = JournaledSink(store, Journal(tmp_path), first_wait=0.01, max_wait=0.01)
    first.open_run("r2", {"source_uid": "r2"})
    first.write("r2", 0, _codes(0), _pattern(0))
    assert first.close(0.2) is False  # stopped with both waiting (a process that ends)
    store.up = True
    again = JournaledSink(store, Journal(tmp_path))  # slot 0 is free again
    assert again.journal.directory.name == "slot-0"
    assert again.wait(30)
    again.close(5)
    md = store.metadata["r2"]
    assert md["frames_done"] == [0]
    assert md["status"] == "interrupted" and "xrd-mask reprocess r2" in md["errors"]["run"]


def test_two_journals_on_one_folder_take_two_slots(tmp_path):
    a, b = Journal(tmp_path), Journal(tmp_path)
    assert {a.directory.name, b.directory.name} == {"slot-0", "slot-1"}
    a.release()
    b.release()


def test_the_budget_refuses_frames_not_runs(tmp_path):
    journal = Journal(tmp_path, max_bytes=100)
    journal.append("open", "r3", {"metadata": {}})
    with pytest.raises(JournalFull, match="xrd-mask reprocess r3"):
        journal.append_write("r3", 0, _codes(0), _pattern(0))
    journal.append("close", "r3", {"status": "complete", "errors": {}})
    assert len(journal) == 2 and journal.frames_waiting() == 0
    journal.release()


def test_what_waits_on_disk_is_this_user_s_alone(tmp_path):
    """Folders 0700 and entries 0600, also for a folder another version made 0755."""
    import stat

    old = tmp_path / "journal"
    old.mkdir(mode=0o755)
    old.chmod(0o755)
    journal = Journal(old)
    journal.append("open", "run-1", {"metadata": {}})
    journal.append_write("run-1", 0, _codes(0), _pattern(0))
    for folder in (old, journal.directory):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    entries = [op.path for op in journal.ops]
    assert len(entries) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in entries)
    journal.release()


def test_a_full_disk_refuses_frames_clearly_and_leaves_no_half_written_file(tmp_path):
    """A real full disk (a 256 KiB tmpfs, tests/full_disk.py): the frames that do not fit are
    refused with the disk named (ENOSPC) and nothing partial is left; the run's closing, which
    the disk cannot take either, is kept in memory; the replay writes every frame kept."""
    import json
    from pathlib import Path

    from tests.full_disk import run_on_small_disk

    disk = tmp_path / "disk"
    disk.mkdir()
    script = Path(__file__).with_name("journal_on_full_disk.py")
    done = run_on_small_disk(disk, "256k", [str(script), str(disk)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    kept, refused = out["kept"], {int(k): v for k, v in out["refused"].items()}
    assert out["free"] == 0 and kept and refused  # the disk did fill
    assert sorted(kept + list(refused)) == list(range(40))
    first = min(refused)
    assert "ENOSPC" in refused[first] and f"frame {first} of run run-a" in refused[first]
    assert "xrd-mask reprocess run-a" in refused[first]
    assert not any(name.endswith(".tmp") for name in out["files"])  # nothing half written
    assert len([n for n in out["files"] if n.endswith("-write.npz")]) == len(kept)
    assert out["in_memory"] and out["replayed"]
    assert out["written"] == kept and out["status"] == "success"


class KeyRefusing(InMemoryResultSink):
    """An in-memory store that refuses the key (as Tiled does: `TiledAuthError`) until
    ``key_ok``, and buffers frames like `TiledResultSink`: ``done`` lists them only once
    ``flush`` (or the run's closing) has written them."""

    def __init__(self) -> None:
        super().__init__()
        self.key_ok, self.refusals, self.flushed = False, 0, set()

    def open_run(self, source_uid, metadata):
        from xrd_bluesky_mask.errors import TiledAuthError

        if not self.key_ok:
            self.refusals += 1
            raise TiledAuthError("the Tiled server at http://t refused the API key (HTTP 401)")
        super().open_run(source_uid, metadata)

    def done(self, source_uid):
        return set(self.flushed)

    def flush(self, source_uid):
        self.flushed |= super().done(source_uid)


def test_a_refused_key_keeps_every_result_and_a_frame_file_goes_once_flushed(tmp_path,
                                                                             caplog):
    store = KeyRefusing()
    sink = JournaledSink(store, Journal(tmp_path), first_wait=0.01, max_wait=0.05)
    sink.open_run("r3", {"source_uid": "r3"})
    for i in range(3):
        sink.write("r3", i, _codes(i), _pattern(i))
    wait_for(lambda: store.refusals >= 3, 10, "the store to refuse the key thrice")
    assert sink.journal.frames_waiting("r3") == 3 and not sink.wait(0.1)  # nothing dropped
    assert caplog.text.count("refuses this process's API key") == 1  # said once, clearly
    assert "Nothing is lost:" in caplog.text and "frame results wait in the journal" in caplog.text
    assert "xrd-mask replay --tiled URI --api-key KEY" in caplog.text
    store.key_ok = True  # the right key
    assert sink.wait(30)  # written, flushed (the replay asks when idle), files gone
    assert store.flushed == {0, 1, 2}
    assert not list((tmp_path / "slot-0").glob("*-write.npz"))
    assert "accepts the API key again" in caplog.text
    assert sink.close(5)
