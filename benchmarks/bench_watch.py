"""Lag of ``xrd-mask watch`` against the in-process callback, on the same scans.

One ``tiled serve`` process with the in-memory streaming cache. Each repeat runs two scans in a
child process (RunEngine, TiledWriter ``batch_size=1``, the simulated detector; frames rendered
before timing): **callback**, with `XRDMaskCallback` subscribed in that process (its default
``quiet_s="auto"``), and **watch**, TiledWriter only, masked by a `TiledRunWatcher` in this
process from Tiled's notifications (the two write to separate containers, so each run is
masked once). A frame's latency is from its event document (the scan
process's clock) to the moment its results were handed to the result journal (`Worker`
listener; same machine, same clock). Prints Markdown tables: median and largest latency per
mode and the scan's duration; the median latency of each frame of a scan. Run:

    .venv/bin/python benchmarks/bench_watch.py [--frames 5] [--size 1024] [--exposure 1.0]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from xrd_bluesky_mask.sysinfo import machine


def _scan(argv: list[str]) -> None:
    """The child process: one scan, masked in-process or not; prints a JSON line."""
    from bluesky.plans import count

    from xrd_bluesky_mask.bluesky.session import Session

    uri, key, raw, mode, frames, size, exposure, journal = argv
    events: dict[int, float] = {}
    written: dict[int, float] = {}
    # separate containers: the watcher follows only the runs of "watched"
    with Session(uri=uri, api_key=key, readable_storage=[raw], backup_directory=None,
                 runs_path="watched" if mode == "watch" else "masked") as s:
        det = s.add_detector(shape=(int(size), int(size)), presets=("rings_spots", "spots_po"),
                             seed=3, n_unique=int(frames), exposure_s=float(exposure))
        s.RE.subscribe(lambda name, doc: events.__setitem__(doc["seq_num"] - 1, doc["time"]),
                       "event")
        if mode == "callback":
            cb = s.start_masking("classical", journal=journal)
            cb.worker.add_listener(lambda uid, i, row: i is not None and
                                   written.__setitem__(i, time.time()))
        t0 = time.time()
        result = s.RE(count([det], num=int(frames)), **det.start_metadata())
        scan_s = time.time() - t0
        if mode == "callback":
            s.stop_masking(timeout=300)
    print(json.dumps({"uid": result.run_start_uids[0], "events": events, "written": written,
                      "scan_s": scan_s}), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the scans, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5, help="frames per scan")
    parser.add_argument("--size", type=int, default=1024, help="frame side, pixels")
    parser.add_argument("--exposure", type=float, default=1.0, help="seconds per frame")
    parser.add_argument("--repeats", type=int, default=2, help="scan pairs (all frames pooled)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from xrd_bluesky_mask.bluesky.watch import TiledRunWatcher
    from xrd_bluesky_mask.tiled.serve_process import TiledProcess

    base = Path(tempfile.mkdtemp(prefix="bench_watch_"))
    raw = base / "raw"
    raw.mkdir()
    server = TiledProcess(base / "tiled", readable_storage=[raw]).start()
    written: dict[str, dict[int, float]] = {}
    lock = threading.Lock()

    def note(uid: str, index: int | None, row: dict[str, Any]) -> None:
        if index is not None:
            with lock:
                written.setdefault(uid, {})[index] = time.time()

    watched = server.client().create_container("watched")
    watcher = TiledRunWatcher(watched, masker="classical", journal=base / "journal-w",
                              report=lambda line: None)
    watcher.worker.add_listener(note)
    watcher.start()
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    loop.start()
    latencies: dict[str, list[float]] = {"callback": [], "watch": []}
    scans: dict[str, list[float]] = {"callback": [], "watch": []}
    by_frame: dict[str, list[list[float]]] = {"callback": [], "watch": []}
    try:
        for r in range(args.repeats):
            for mode in ("watch", "callback") if r % 2 else ("callback", "watch"):
                out = subprocess.run(
                    [sys.executable, __file__, "--scan", server.uri, server.api_key, str(raw),
                     mode, str(args.frames), str(args.size), str(args.exposure),
                     str(base / "journal-cb")], capture_output=True, text=True, check=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                uid, events = got["uid"], {int(k): v for k, v in got["events"].items()}
                if mode == "watch":
                    deadline = time.monotonic() + 300
                    while len(written.get(uid, {})) < args.frames:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"watch did not mask run {uid}")
                        time.sleep(0.1)
                    done = written[uid]
                else:
                    done = {int(k): v for k, v in got["written"].items()}
                latencies[mode] += [done[i] - events[i] for i in sorted(events)]
                by_frame[mode].append([done[i] - events[i] for i in sorted(events)])
                scans[mode].append(got["scan_s"])
    finally:
        stop.set()
        watcher.close(60)
        server.close()
    print(f"\n{machine()}; {args.frames} frames of {args.size} x {args.size} px per scan, "
          f"exposure {args.exposure:g} s, classical masker, {args.repeats} scans per mode\n")
    print("| trigger | median latency (s) | largest latency (s) | scan (s) |")
    print("|---|---|---|---|")
    for mode in ("callback", "watch"):
        lat = latencies[mode]
        print(f"| {mode} | {statistics.median(lat):.2f} | {max(lat):.2f} | "
              f"{statistics.median(scans[mode]):.1f} |")
    print("\n| trigger | " + " | ".join(f"frame {i}" for i in range(args.frames)) + " |")
    print("|---|" + "---:|" * args.frames)
    for mode in ("callback", "watch"):
        cols = [statistics.median(scan[i] for scan in by_frame[mode])
                for i in range(args.frames)]
        print(f"| {mode} | " + " | ".join(f"{c:.2f}" for c in cols) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--scan":
        _scan(sys.argv[2:])
    else:
        main()
