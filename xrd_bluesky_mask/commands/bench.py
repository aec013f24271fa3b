"""``xrd-mask bench``: frames/s and ms/frame per stage, U-Net (fast and reference) vs classical."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 6


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    b = sub.add_parser(
        "bench", help="time masking + integration of full frames (U-Net vs classical)",
        description="Times the U-Net fast path (without and with candidate tiles), the U-Net "
        "reference path and the classical filter on the same simulated frames in one process, "
        "and prints a table per stage and end to end with the machine, ratios, the fast path's "
        "agreement with the reference and every network engine measured on this machine.")
    b.add_argument("--size", type=int, default=2880, help="frame size, px (default 2880)")
    b.add_argument("--frames", type=int, default=4, help="frames timed per path (default 4)")
    b.add_argument("--batch", type=int, default=None,
                   help="frames per fast-path batch (default: 4 on a GPU, 1 on the CPU, where "
                   "batches measured slower)")
    b.add_argument("--paper", action="store_true",
                   help="also time the paper's configuration (256 px qlty windows, step 128)")
    b.add_argument("--paths", nargs="+", default=None,
                   choices=["fast", "candidates", "reference", "classical", "paper"],
                   help="time only these paths (candidates: the fast path with candidate "
                   "tiles)")
    b.add_argument("--precision", default="auto",
                   choices=["auto", "fp32", "bf16", "bf16-fused", "fp16"],
                   help="the U-Net's engine (default: this machine's measured choice)")
    b.add_argument("--no-engines", action="store_true",
                   help="do not measure every network engine afresh first")
    b.add_argument("--model", default=None, help="model folder (default: the active model)")
    b.add_argument("--device", default=None, help="torch device (default: cuda if usable)")
    b.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return b


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    import numpy as np

    from ..apps.bench import run_bench
    from ..errors import ConfigError

    paths = args.paths or ["fast", "candidates", "reference", "classical"] + (
        ["paper"] if args.paper else [])
    for option, value in (("--frames", args.frames), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: must be at least 1")
    with np.errstate(all="ignore"):
        report = run_bench(args.size, args.frames, batch=args.batch, paths=paths,
                           model=args.model, device=args.device, precision=args.precision,
                           engines=not args.no_engines)
    print(report.summary())
    if args.json:
        print(f"\nwrote {report.to_json(args.json)}")
    return 0
