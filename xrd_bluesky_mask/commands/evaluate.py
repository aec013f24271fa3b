"""``xrd-mask evaluate``: score the U-Net, the classical filter and no mask on held-out frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_integration, add_masker, integration_from_args, masker_from_args

ORDER = 3


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = sub.add_parser("evaluate", help="score maskers on held-out simulated frames")
    e.add_argument("--size", type=int, default=2880, help="frame size, px (default 2880)")
    e.add_argument("--frames-per-set", type=int, default=4,
                   help="frames in each held-out set (presets, transfer); default 4")
    e.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder")
    add_masker(e)
    add_integration(e)
    return e


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..apps.evaluate import ORACLE, evaluate, write_report
    from ..masking import get_masker

    settings = integration_from_args(args)  # checked before the model loads
    unet = masker_from_args(argparse.Namespace(**{**vars(args), "masker": "unet"}))
    classical = get_masker("classical", n_sigma=args.n_sigma)
    maskers = {"unet": unet, "classical": classical, "none": None, "ground truth": ORACLE}
    report = evaluate(maskers, size=args.size,
                      frames_per_set=args.frames_per_set, settings=settings)
    print(report.markdown())
    out = write_report(report, args.out, {"unet": unet.settings(),
                                          "classical": classical.settings(),
                                          "size_px": args.size})
    print(f"\nwrote {out / 'evaluation.md'} and {out / 'evaluation.json'}")
    return 0
