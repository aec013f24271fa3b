"""Run inside a full disk (tests/full_disk.py): fill the journal's disk, then report as JSON
what the journal did. Argument: the mount point."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from xrd_bluesky_mask.errors import JournalFull
from xrd_bluesky_mask.sinks.journal import Journal
from xrd_bluesky_mask.sinks.journaled import JournaledSink
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink

disk = Path(sys.argv[1])
journal = Journal(disk / "journal")
rng = np.random.default_rng(0)
pattern = xr.DataArray(np.ones(16, np.float32), dims=("radial",), name="intensity",
                       coords={"two_theta": ("radial", np.linspace(1, 30, 16))})
journal.append("open", "run-a", {"metadata": {"n": 1}})
kept, refused = [], {}
for i in range(40):  # random codes do not compress: the disk fills within a few frames
    codes = rng.integers(0, 3, (100, 100)).astype(np.uint8)
    try:
        journal.append_write("run-a", i, codes, pattern)
        kept.append(i)
    except JournalFull as exc:
        refused[i] = str(exc)
# what room is left (less than a frame) goes to another file: then a run-level operation
# cannot be kept on disk either, and is kept in memory
fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fd, b"x" * 512)
except OSError:
    pass
finally:
    os.close(fd)
free = os.statvfs(disk).f_bavail
close = journal.append("close", "run-a", {"status": "success", "errors": {}})
names = sorted(p.name for p in journal.directory.iterdir())
store = InMemoryResultSink()
sink = JournaledSink(store, journal)
replayed = sink.close(timeout=30)
print(json.dumps({
    "kept": kept, "refused": refused, "files": names, "in_memory": close.size == 0,
    "replayed": replayed, "written": sorted(store.done("run-a")),
    "status": store.metadata["run-a"]["status"], "free": free,
}))
