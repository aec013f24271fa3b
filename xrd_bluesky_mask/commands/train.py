"""``xrd-mask train``: train or fine-tune a U-Net on simulated frames or image+mask files."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 2


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help="train a U-Net on simulated frames or image+mask files")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, best/)")
    t.add_argument("--images", nargs="+", type=Path, default=None,
                   help="train on these frames instead of simulated ones (needs --masks, --poni)")
    t.add_argument("--masks", nargs="+", type=Path, default=None,
                   help="label masks for --images (0 = no spot, 1 = spot, other = ignore)")
    t.add_argument("--poni", type=Path, default=None, help="PONI of the --images detector")
    t.add_argument("--init", type=Path, default=None,
                   help="fine-tune from this model folder instead of a fresh network")
    t.add_argument("--teacher", type=Path, default=None,
                   help="distil this trained model folder: its spot probability joins the "
                   "labels in the loss (to train a lighter network)")
    t.add_argument("--prune-teacher", action="store_true",
                   help="start from the teacher's most important channels (network slimming) "
                   "instead of random weights; needs --teacher")
    t.add_argument("--distill-weight", type=float, default=1.0,
                   help="weight of the teacher term (default 1)")
    t.add_argument("--depth", type=int, default=None, help="U-Net levels (default 4)")
    t.add_argument("--base-channels", type=int, default=None,
                   help="feature maps at full resolution (default 8)")
    t.add_argument("--growth-rate", type=float, default=None,
                   help="feature-map growth per level (default 2)")
    t.add_argument("--frames", type=int, default=32, help="simulated frames (default 32)")
    t.add_argument("--size", type=int, default=1024, help="simulated frame size, px")
    t.add_argument("--scenes", default="v2", choices=["v2", "v3"],
                   help="simulated scene set: v2 (the first models') or v3 (long streaks, "
                   "heavy tails, edges, extreme pixels, beamstop rims, other shapes)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=50)
    t.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (paper: 1e-2)")
    t.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    t.add_argument("--spot-weight", type=float, default=4.0, help="CE weight of the spot class")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    t.add_argument("--model-id", default="xrdmask-unet")
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--device", default=None)
    return t


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..training.run import train_from_args

    train_from_args(args, argv)
    return 0
