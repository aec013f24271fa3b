"""``xrd-mask demo``: the whole pipeline on simulated frames (live) or offline scoring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._options import add_integration, add_masker, integration_from_args, masker_from_args

ORDER = 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = sub.add_parser(
        "demo",
        help="a Bluesky scan of simulated frames masked live, results in Tiled (embedded server)",
        description="Starts a local Tiled server (or uses --tiled), runs count([det], N) on a "
        "simulated XRD detector with TiledWriter and the masking callback, then prints where "
        "the results live and how to query them, and writes a PNG. --offline instead scores "
        "the U-Net and the classical filter against the simulator's ground truth.",
    )
    d.add_argument("--frames", type=int, default=5, help="frames to scan (default 5)")
    d.add_argument("--size", type=int, default=2880, help="frame size, px (default 2880)")
    d.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    d.add_argument("--out", type=Path, default=Path("xrd-mask-demo"), help="output folder")
    d.add_argument("--tiled", default=None, metavar="URI",
                   help="use this Tiled server instead of the embedded one (API key from "
                   "--api-key or TILED_API_KEY)")
    d.add_argument("--api-key", default=None, help="Tiled API key (default: TILED_API_KEY)")
    d.add_argument("--keep", action="store_true",
                   help="leave the embedded server running and print its URL (Ctrl-C to stop)")
    d.add_argument("--offline", action="store_true",
                   help="no Tiled/Bluesky: simulate, mask, score against the ground truth")
    add_masker(d)
    add_integration(d)
    return d


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    settings = integration_from_args(args)  # checked before the model loads
    if args.offline:
        from ..apps.demo import run_demo

        run_demo(args.out, frames=args.frames, size=args.size, seed=args.seed,
                 masker=masker_from_args(args), settings=settings)
        return 0
    from ..apps.live import run_live_demo

    if args.tiled:
        from ..tiled.connect import connect

        # A dead URI or a refused key fails here in seconds, not after the model has loaded.
        connect(args.tiled, args.api_key)
    summary = run_live_demo(frames=args.frames, size=args.size, seed=args.seed,
                            masker=masker_from_args(args), tiled_uri=args.tiled,
                            api_key=args.api_key, keep=args.keep, out_dir=args.out)
    return verdict(summary, args.frames)


def verdict(summary: dict[str, Any], frames: int) -> int:
    """The exit code of a live demo: 0 only when the scan succeeded and every frame was masked.

    The scan itself succeeds even when the masker fails on every frame (the callback records
    the errors and never aborts the plan), so the frames are counted here; what went wrong
    goes to stderr.
    """
    if summary.get("exit_status") != "success":
        print(f"xrd-mask demo: the scan ended with status {summary.get('exit_status')!r}",
              file=sys.stderr)
        return 1
    rows = summary.get("frames", [])
    failed = [r for r in rows if r.get("error")]
    masked = len(rows) - len(failed)
    if masked >= frames:
        return 0
    missing = frames - len(rows)
    head = (f"every frame failed: none of the {frames} frames was masked" if masked == 0
            else f"{frames - masked} of the {frames} frames failed")
    details = [f"frame {r['index']}: {r['error']}" for r in failed[:3]]
    if len(failed) > 3:
        details.append(f"... and {len(failed) - 3} more")
    if missing:
        details.append(f"{missing} frame(s) got no result before the timeout")
    print(f"xrd-mask demo: {head}", file=sys.stderr)
    for line in details:
        print(f"  {line}", file=sys.stderr)
    return 1
