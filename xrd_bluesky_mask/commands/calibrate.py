"""``xrd-mask calibrate``: re-choose a model's threshold on whole frames for a target TNR."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 3


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    c = sub.add_parser(
        "calibrate", help="choose a model's threshold on whole simulated frames (target TNR)",
        description="Simulates training-style frames with seeds neither training nor "
        "evaluation uses, finds the spot-probability threshold that keeps the target true "
        "negative rate, and writes it into the model card (the weights are not touched).")
    c.add_argument("model", type=Path, help="model folder (model_card.json + weights)")
    c.add_argument("--target-tnr", type=float, default=0.999,
                   help="true negative rate to keep on whole frames (default 0.999)")
    c.add_argument("--frames", type=int, default=8, help="frames to simulate (default 8)")
    c.add_argument("--size", type=int, default=1024, help="frame size, px (default 1024)")
    c.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    return c


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..errors import ConfigError
    from ..training.calibrate import calibrate_threshold, write_threshold

    if not 0.5 < args.target_tnr < 1:
        raise ConfigError(f"--target-tnr {args.target_tnr:g}: must be in (0.5, 1)")
    cal = calibrate_threshold(args.model, frames=args.frames, size=args.size,
                              target_tnr=args.target_tnr)
    print(f"threshold {cal['threshold']:.4f}: TNR {cal['tnr']:.5f}, recall {cal['recall']:.4f} "
          f"on {cal['frames']} frames of {cal['size_px']} px")
    if not args.dry_run:
        print(f"wrote {write_threshold(args.model, cal)}")
    return 0
