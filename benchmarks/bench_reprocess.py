"""Reprocessing throughput: one stored run, in this process vs on a local Dask cluster.

An embedded Tiled server (a child process by default, so that serving does not share the
local path's GIL) stores a run of simulated ``--size`` x ``--size`` float32 frames written by
the RunEngine with TiledWriter. The run is then reprocessed (Tiled read + mask + integrate +
Tiled write) into separate result roots: locally (`reprocess` with no Dask: the `Worker`'s
read, compute and write threads) and with ``--workers`` Dask worker processes
(`LocalCluster`, one thread each; every task reads its frames from Tiled and writes its
results). Before timing, a 2-frame run warms each path (numba, pyFAI engine, model load on
every worker). Prints a Markdown table of frames per second. Run:

    .venv/bin/python benchmarks/bench_reprocess.py [--frames 8] [--size 2880] [--masker unet]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from xrd_bluesky_mask.sysinfo import machine


def _scan(session, det, num: int) -> str:
    """A stored run of ``num`` frames (the session's TiledWriter writes it); its uid."""
    from bluesky.plans import count

    return session.RE(count([det], num=num), **det.start_metadata()).run_start_uids[0]


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, store the runs, reprocess them both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames in the timed run")
    parser.add_argument("--size", type=int, default=2880, help="frame side, pixels")
    parser.add_argument("--masker", default="unet", choices=["unet", "classical"])
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--server", default="process", choices=["thread", "process"],
                        help="embedded Tiled server in a child process or in this one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import distributed  # noqa: F401 (its logging config first, then ours)

    from xrd_bluesky_mask.bluesky.session import Session
    from xrd_bluesky_mask.masking import get_masker
    from xrd_bluesky_mask.reprocess import reprocess
    from xrd_bluesky_mask.reprocess.cluster import dask_client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    base = Path(tempfile.mkdtemp(prefix="bench_reprocess_"))
    raw = base / "raw"
    t0 = time.perf_counter()
    masker = get_masker(args.masker)
    rows = []
    with Session(directory=base / "tiled", readable_storage=[raw],
                 server_mode=args.server) as session:
        det = session.add_detector(shape=(args.size, args.size),
                                   presets=("rings_spots", "spots_po"), n_unique=2)
        det.generator.prerender(2)
        client = session.client
        warm, uid = _scan(session, det, 2), _scan(session, det, args.frames)
        print(f"setup (server, render, store {args.frames + 2} frames): "
              f"{time.perf_counter() - t0:.1f} s")

        reprocess(client, warm, masker=masker, root="bench/local", progress=False)
        local = reprocess(client, uid, masker=masker, root="bench/local", progress=False)
        rows.append(("local, in process (read/compute/write threads)", local))

        t1 = time.perf_counter()
        dclient, close = dask_client(workers=args.workers)
        try:
            reprocess(client, warm, masker=masker, root="bench/dask", dask=dclient,
                      progress=False)
            startup = time.perf_counter() - t1
            fanned = reprocess(client, uid, masker=masker, root="bench/dask", dask=dclient,
                               progress=False)
        finally:
            close()
        rows.append((f"Dask LocalCluster, {args.workers} worker processes x 1 thread", fanned))

    print(f"\n{args.frames} frames of {args.size}x{args.size} float32, masker {args.masker}, "
          f"Tiled server in a {args.server}; {machine()}\n")
    print("| path | frames | seconds | frames/s | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base_rate = rows[0][1].processed / rows[0][1].seconds
    for name, summary in rows:
        rate = summary.processed / summary.seconds
        print(f"| {name} | {summary.processed} | {summary.seconds:.1f} | {rate:.2f} | "
              f"{rate / base_rate:.2f}x |")
    print(f"\nDask cluster start + warm-up run: {startup:.1f} s (not in the table). Results "
          "are equal either way (tests/reprocess/test_dask.py).")
    bad = [s for _, s in rows if not s.ok]
    if bad:
        print("warning: " + "; ".join(r.table() for r in bad))


if __name__ == "__main__":
    main()
