"""Live masking during a Bluesky scan: RunEngine overhead and end-to-end pipeline throughput.

A `Session` (embedded Tiled server, RunEngine with TiledWriter ``batch_size=1``) and the simulated
XRD detector (frames rendered before timing, so the scan measures acquisition and documents, not
the simulator; ``--exposure`` adds a per-frame exposure). Each repeat runs ``count([det],
num=frames)`` three times: TiledWriter alone; TiledWriter + `XRDMaskCallback` with its default
``quiet_s`` ("auto": the worker waits for gaps between documents while it falls behind); and with
``quiet_s=0`` (the worker processes at once); the three alternate within each repeat, so a load
that comes and goes on the machine touches them alike. The callback's work (through its results
journal, kept in the benchmark's temporary folder) is waited for before the next scan. Prints a
Markdown table: the RunEngine's scan time (ratio to TiledWriter alone; target <= 1.05), the
pipeline's frames per second end to end (Tiled read + mask + integrate + Tiled write, from the
scan's start to the last result written) and the median milliseconds per stage, then each frame's
latency in the last scan (does it grow?). Run:

    .venv/bin/python benchmarks/bench_live.py [--frames 5] [--size 2880] [--masker classical]

``--scale-out`` prints the scale-out table instead: the same scan (back-to-back frames, so the
detector outruns the masking and the sustained rate is the masking's) masked in-process, then
with the frames fanned out over a local Dask cluster of 1 and 2 worker processes (``workers=``
of `XRDMaskCallback`; each variant first masks a 2-frame scan, so imports and pyFAI's engine
are built before timing). Frames per second from the scan's start to the last result written,
the lag (latency of the first and last frame: growing means falling behind) and the per-frame
compute cost on one thread, from which the workers needed at a given frame rate follow
(rate x cost).

    .venv/bin/python benchmarks/bench_live.py --scale-out [--frames 8] [--size 2880]
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from xrd_bluesky_mask.sysinfo import machine

STAGES = ["read", "mask", "integrate", "tables", "write", "latency"]


def med(xs: list[float]) -> float:
    """Median, NaN for no values."""
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the scans, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5, help="frames per scan")
    parser.add_argument("--size", type=int, default=2880, help="frame side, pixels")
    parser.add_argument("--masker", default="classical", choices=["classical", "unet"])
    parser.add_argument("--repeats", type=int, default=3, help="scan triplets (median shown)")
    parser.add_argument("--exposure", type=float, default=0.0, help="seconds per frame")
    parser.add_argument("--server", default="thread", choices=["thread", "process"],
                        help="embedded Tiled server in this process, or a child process")
    parser.add_argument("--scale-out", action="store_true",
                        help="the scale-out table (in-process, 1 and 2 Dask workers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.scale_out:
        scale_out(args)
        return

    from bluesky.plans import count

    from xrd_bluesky_mask.bluesky.callback import XRDMaskCallback
    from xrd_bluesky_mask.bluesky.session import Session
    from xrd_bluesky_mask.geometry import as_geometry
    from xrd_bluesky_mask.masking import get_masker
    from xrd_bluesky_mask.pipeline import process_frame

    base = Path(tempfile.mkdtemp(prefix="bench_live_"))
    os.environ.setdefault("XRD_MASK_JOURNAL", str(base / "journal"))  # results journal
    raw = base / "raw"
    shape = (args.size, args.size)
    default_quiet = inspect.signature(XRDMaskCallback).parameters["quiet_s"].default
    variants = {"TiledWriter only": None,
                f"+ XRDMaskCallback (default quiet_s={default_quiet})": {},
                "+ XRDMaskCallback (quiet_s=0)": {"quiet_s": 0.0}}
    scan: dict[str, list[float]] = {v: [] for v in variants}
    fps: dict[str, list[float]] = {v: [] for v in variants}
    stages: dict[str, dict[str, list[float]]] = {v: {s: [] for s in STAGES} for v in variants}
    trend: dict[str, list[float]] = {}  # latency of each frame of the last scan, s
    # the embedded server, a RunEngine with TiledWriter(batch_size=1) subscribed
    with Session(directory=base / "tiled", readable_storage=[raw],
                 server_mode=args.server) as session:
        RE = session.RE
        t0 = time.perf_counter()
        det = session.add_detector(shape=shape, presets=("rings_spots", "spots_po"),
                                   n_unique=min(args.frames, 2), exposure_s=args.exposure)
        det.generator.prerender(min(args.frames, 2))
        masker = get_masker(args.masker)
        geometry = as_geometry(det.generator.poni_text, shape)
        process_frame(det.generator.frame(0), geometry, masker)  # warm: numba, pyFAI engine
        print(f"setup (render frames, warm masker and pyFAI): {time.perf_counter() - t0:.1f} s")
        RE(count([det], num=1))  # warm the writer and the server
        for _ in range(args.repeats):
            for name, kwargs in variants.items():
                cb = None if kwargs is None else session.start_masking(masker, **kwargs)
                t0 = time.perf_counter()
                result = RE(count([det], num=args.frames), **det.start_metadata())
                scan[name].append(time.perf_counter() - t0)
                if cb is None:
                    continue
                cb.wait()
                fps[name].append(args.frames / (time.perf_counter() - t0))
                session.stop_masking()
                record = cb.records[result.run_start_uids[0]]
                if record.errors or record.status != "complete":
                    print(f"warning: run status {record.status}, errors {record.errors}")
                for frame in record.frames.values():
                    for s in STAGES:
                        if s in frame.timings:
                            stages[name][s].append(frame.timings[s])
                trend[name] = [record.frames[i].timings.get("latency", float("nan"))
                               for i in sorted(record.frames)]

    names = list(variants)
    base_scan = med(scan[names[0]])
    print(f"\n{args.frames} frames of {args.size}x{args.size} float32 per scan, exposure "
          f"{args.exposure:g} s, masker {args.masker}, Tiled server in a {args.server}, "
          f"{args.repeats} repeats, {machine()}\n")
    print("| measure | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    print("| RunEngine scan time (s), median (all) | " + " | ".join(
        f"{med(scan[n]):.2f} ({', '.join(f'{x:.2f}' for x in scan[n])})" for n in names) + " |")
    print("| ratio to TiledWriter only, medians (target <= 1.05) | " + " | ".join(
        f"{med(scan[n]) / base_scan:.3f}" for n in names) + " |")
    print("| ratio to TiledWriter only, fastest scans | " + " | ".join(
        f"{min(scan[n]) / min(scan[names[0]]):.3f}" for n in names) + " |")
    print("| pipeline end to end, scan start to last result (frames/s) | " + " | ".join(
        f"{med(fps[n]):.2f}" if fps[n] else "-" for n in names) + " |")
    for s in STAGES:
        label = "latency, frame announced to result written" if s == "latency" else s
        print(f"| {label} (median ms per frame) | " + " | ".join(
            f"{1000 * med(stages[n][s]):.0f}" if stages[n][s] else "-" for n in names) + " |")
    print("\nLatency of each frame of the last scan, frame announced to result written (s): "
          "growing means the masking does not keep up with the detector.\n")
    for n, values in trend.items():
        print(f"- {n}: " + ", ".join(f"{v:.2f}" for v in values))


def scale_out(args: argparse.Namespace) -> None:
    """Frames per second and lag against the number of Dask workers (see the docstring)."""
    from bluesky.plans import count

    from xrd_bluesky_mask.bluesky.session import Session
    from xrd_bluesky_mask.masking import get_masker

    base = Path(tempfile.mkdtemp(prefix="bench_live_scale_"))
    os.environ.setdefault("XRD_MASK_JOURNAL", str(base / "journal"))
    raw = base / "raw"
    shape = (args.size, args.size)
    variants: dict[str, int | None] = {"in-process": None, "Dask, 1 worker": 1,
                                       "Dask, 2 workers": 2}
    rows: dict[str, dict[str, list[float]]] = {
        v: {"fps": [], "first": [], "last": [], "cost": []} for v in variants}
    with Session(directory=base / "tiled", readable_storage=[raw],
                 server_mode=args.server) as session:
        RE = session.RE
        det = session.add_detector(shape=shape, presets=("rings_spots", "spots_po"),
                                   n_unique=min(args.frames, 2), exposure_s=args.exposure)
        det.generator.prerender(min(args.frames, 2))
        masker = get_masker(args.masker)
        RE(count([det], num=1))  # warm the writer and the server
        for name, workers in variants.items():
            cb = session.start_masking(masker, quiet_s=0.0, workers=workers)
            try:
                RE(count([det], num=2), **det.start_metadata())  # warm: imports, engines
                cb.wait()
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    result = RE(count([det], num=args.frames), **det.start_metadata())
                    cb.wait()
                    seconds = time.perf_counter() - t0
                    record = cb.records[result.run_start_uids[0]]
                    if record.errors or record.status != "complete":
                        print(f"warning: run status {record.status}, errors {record.errors}")
                    latency = [record.frames[i].timings.get("latency", float("nan"))
                               for i in sorted(record.frames)]
                    rows[name]["fps"].append(args.frames / seconds)
                    rows[name]["first"].append(latency[0])
                    rows[name]["last"].append(latency[-1])
                    rows[name]["cost"].append(med([
                        f.timings["mask"] + f.timings["integrate"] + f.timings.get("tables", 0)
                        for f in record.frames.values() if "mask" in f.timings]))
            finally:
                session.stop_masking(timeout=None)
    print(f"\n{args.frames} back-to-back frames of {args.size}x{args.size} per scan, masker "
          f"{args.masker}, {args.repeats} repeats (median), {machine()}\n")
    print("| variant | frames/s, scan start to last result | speed-up | latency of frame 1 (s) "
          "| latency of the last frame (s) | per-frame cost on one thread (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    first = med(rows["in-process"]["fps"])
    for name, r in rows.items():
        print(f"| {name} | {med(r['fps']):.2f} | {med(r['fps']) / first:.2f}x | "
              f"{med(r['first']):.2f} | {med(r['last']):.2f} | {med(r['cost']):.2f} |")
    cost = med(rows["in-process"]["cost"])
    print(f"\nSizing: workers needed = frame rate x per-frame cost; at {cost:.2f} s per frame "
          + ", ".join(f"{hz:g} frames/s need {max(1, math.ceil(hz * cost))}"
                      for hz in (1, 2, 5, 10)) + " worker threads (cores).")


if __name__ == "__main__":
    main()
