"""Long Tiled outages mid-scan: the scan, every frame's result and the time back to complete.

One ``tiled serve`` child process holds the raw runs and the results (as at a beamline); a
`Session` (RunEngine, TiledWriter with its run backup) masks live with `XRDMaskCallback`
(classical masker, results journal in a temporary folder) while ``count`` takes ``--frames``
frames ``--delay`` s apart on the simulated detector. After frame ``--kill-after`` the server is
SIGKILLed; it is started again (same catalog, port and key) ``--outages`` seconds later, on a
timer, whether the scan is still running or not. The test suite has the short variant
(tests/bluesky/test_outage.py); these outages are too long for it.

Prints a Markdown table, one row per outage length: the scan's exit status and time, the
longest stall of the RunEngine between two frames beyond ``--delay`` (TiledWriter's first failed
write blocks it while the Tiled client retries: ``TILED_RETRY_ATTEMPTS``, 10 by default, is
``--client-attempts``), the frames with exactly one result in Tiled, the derived node's status,
whether the raw run is complete in Tiled, and the seconds from the server's return (it answers
``/healthz``) to everything in Tiled (`Session.wait`). Targets: status success, every frame
once, ``complete``, and at most 30 s back to complete for a 30-frame scan. Run:

    .venv/bin/python benchmarks/bench_outage.py [--outages 60 300] [--frames 30] [--size 512]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from xrd_bluesky_mask.sysinfo import machine


def one_outage(base: Path, outage_s: float, args: argparse.Namespace) -> dict[str, Any]:
    """Run one scan with an outage of ``outage_s`` seconds; returns the table's row."""
    import numpy as np
    from bluesky.plans import count

    from xrd_bluesky_mask.bluesky.session import Session
    from xrd_bluesky_mask.testing import serve_tiled
    from xrd_bluesky_mask.tiled.results import find_results

    raw = base / "raw"
    raw.mkdir(parents=True)
    server: Any = serve_tiled(base / "tiled", readable_storage=[raw], process=True)
    events: list[float] = []
    marks: dict[str, float] = {}

    def restart() -> None:
        server.start()
        marks["back"] = time.monotonic()

    timer = threading.Timer(outage_s, restart)

    def watch(name: str, doc: dict) -> None:
        if name != "event":
            return
        events.append(time.monotonic())
        if doc["seq_num"] == args.kill_after and "killed" not in marks:
            server.kill()
            marks["killed"] = time.monotonic()
            timer.start()

    try:
        with Session(uri=server.uri, api_key=server.api_key, readable_storage=[raw],
                     backup_directory=base / "backup", replay_poll_s=5.0) as s:
            det = s.add_detector(shape=(args.size, args.size), presets="rings_spots", seed=3)
            s.RE.subscribe(watch)
            with s.masking("classical", timeout=60, quiet_s=0, journal=base / "journal"):
                t0 = time.monotonic()
                result = s.RE(count([det], num=args.frames, delay=args.delay),
                              **det.start_metadata())
                scan_s = time.monotonic() - t0
                uid = result.run_start_uids[0]
                timer.join()  # the server is back
                delivered = s.wait(args.wait)
                back_s = time.monotonic() - marks["back"]
            client = server.client()
            run = client[uid]
            raw_complete = (run.metadata.get("stop") is not None
                            and run["primary"]["det"].shape[0] == args.frames)
            node = find_results(client, uid)
            md = node.metadata
            masks = node["mask"][:]
            written = ~np.all(masks == 3, axis=(1, 2))  # 3: "not computed"
            once = int(written.sum()) if masks.shape[0] == args.frames else -1
    finally:
        timer.cancel()
        server.close()
    gaps = np.diff(events) - args.delay if len(events) > 1 else np.zeros(1)
    return {"outage": outage_s, "status": result.exit_status, "scan": scan_s,
            "stall": float(gaps.max()), "once": once, "derived": md.get("status"),
            "frames_done": len(md.get("frames_done", [])), "raw": raw_complete,
            "back": back_s if delivered else float("nan"),
            "down": marks["back"] - marks["killed"]}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run one scan per outage length, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", type=float, nargs="+", default=[60.0, 300.0],
                        help="seconds the server stays down (one scan each)")
    parser.add_argument("--frames", type=int, default=30, help="frames per scan")
    parser.add_argument("--size", type=int, default=512, help="frame side, pixels")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between frames")
    parser.add_argument("--kill-after", type=int, default=5, help="frame after which it dies")
    parser.add_argument("--wait", type=float, default=600.0,
                        help="most seconds to wait for delivery after the server's return")
    parser.add_argument("--client-attempts", type=int, default=None,
                        help="the Tiled client's attempts per request (default: its own, 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.client_attempts is not None:
        import tiled.client.utils

        tiled.client.utils.TILED_RETRY_ATTEMPTS = args.client_attempts  # read per request

    rows = []
    for outage_s in args.outages:
        with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
            rows.append(one_outage(Path(tmp), outage_s, args))
    attempts = args.client_attempts or "default (10)"
    print(f"\n{args.frames} frames of {args.size}x{args.size}, {args.delay:g} s apart, server "
          f"SIGKILLed after frame {args.kill_after}; Tiled client attempts per request: "
          f"{attempts}; {machine()}\n")
    print("| outage (s) | server down, start included (s) | scan status | scan time (s) | "
          "longest RunEngine stall (s) | frames with one result | derived node | raw run "
          "complete | s from return to all in Tiled |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['outage']:g} | {r['down']:.1f} | {r['status']} | {r['scan']:.1f} | "
              f"{r['stall']:.1f} | "
              f"{r['once']} of {args.frames} | {r['derived']} ({r['frames_done']} done) | "
              f"{'yes' if r['raw'] else 'NO'} | {r['back']:.1f} |")


if __name__ == "__main__":
    main()
