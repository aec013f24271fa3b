"""Run inside a small real disk (tests/full_disk.py) by test_durable.py: a `Session` on the
given Tiled server masks two scans with its results journal on that disk; the disk is filled
after the callback starts and freed between the scans. Prints what happened as JSON.

Arguments: the disk's mount point, the server's URI and key, the detector's folder."""

import json
import os
import sys
from pathlib import Path

from bluesky.plans import count

from xrd_bluesky_mask.bluesky.session import Session

disk, uri, key, raw = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
N = 4


def fill(path: Path) -> None:
    """Take every free byte of the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


out = {}
with Session(uri=uri, api_key=key, readable_storage=[raw], backup_directory=raw / "backup"
             ) as s:
    det = s.add_detector(shape=(96, 96), presets="rings_spots", seed=5)
    with s.masking("classical", timeout=60, quiet_s=0, journal=disk / "journal") as cb:
        journal = cb.worker.journaled.journal  # type: ignore[union-attr]
        fill(disk / "filler")
        full = s.RE(count([det], num=N), **det.start_metadata())
        out["full_free_blocks"] = os.statvfs(disk).f_bavail
        out["full_delivered"] = cb.wait(60)
        record = cb.records[full.run_start_uids[0]]
        out["full"] = {"uid": full.run_start_uids[0], "exit": full.exit_status,
                       "errors": {str(k): v for k, v in record.errors.items()},
                       "done": sorted(record.done)}
        (disk / "filler").unlink()  # room again
        freed = s.RE(count([det], num=N), **det.start_metadata())
        out["freed_delivered"] = cb.wait(60)
        out["freed"] = {"uid": freed.run_start_uids[0], "exit": freed.exit_status,
                        "done": sorted(cb.records[freed.run_start_uids[0]].done)}
        out["files"] = sorted(p.name for p in journal.directory.iterdir())
print(json.dumps(out))
