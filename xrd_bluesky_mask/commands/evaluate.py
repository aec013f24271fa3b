"""``xrd-mask evaluate``: score the U-Net, the classical filter and no mask on held-out frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_integration, add_masker, integration_from_args, masker_from_args

ORDER = 3


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = sub.add_parser("evaluate", help="score maskers on held-out simulated frames")
    e.add_argument("--size", type=int, default=2880, help="frame size, px (default 2880)")
    e.add_argument("--frames-per-set", type=int, default=None,
                   help="frames in each held-out set, its styles in turn; default: a frame of "
                   "every style (5), which the release gate needs")
    e.add_argument("--sets", nargs="+", default=None, metavar="SET",
                   help="held-out sets: presets, transfer, shapes, negatives (default: all)")
    e.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder")
    e.add_argument("--against", type=Path, default=None, metavar="EVALUATION",
                   help="release gate: hold the result against this evaluation.json (or its "
                   "folder) of the current default, made with the same --size and "
                   "--frames-per-set; exit 1 if any specificity figure is worse or recall is "
                   "not better")
    e.add_argument("--candidate", type=Path, default=None, metavar="EVALUATION",
                   help="with --against: gate this existing evaluation instead of running one")
    add_masker(e)
    add_integration(e)
    return e


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..apps.evaluate import ORACLE, SETS, evaluate, write_report
    from ..apps.release_gate import load_evaluation, release_gate
    from ..errors import ConfigError
    from ..masking import get_masker
    from ..simulate.heldout import FRAMES_FOR_EVERY_STYLE

    if args.candidate is not None and args.against is None:
        raise ConfigError("--candidate is gated against a baseline: add --against EVALUATION")
    sets = tuple(args.sets or SETS)
    unknown = sorted(set(sets) - set(SETS))
    if unknown:
        raise ConfigError(f"unknown held-out sets {unknown}; choose from {', '.join(SETS)}")
    baseline = load_evaluation(args.against) if args.against is not None else None
    if args.candidate is not None:
        return _gate(load_evaluation(args.candidate), baseline, release_gate)
    frames_per_set = args.frames_per_set or FRAMES_FOR_EVERY_STYLE
    settings = integration_from_args(args)  # checked before the model loads
    unet = masker_from_args(argparse.Namespace(**{**vars(args), "masker": "unet"}))
    classical = get_masker("classical", n_sigma=args.n_sigma)
    maskers = {"unet": unet, "classical": classical, "none": None, "ground truth": ORACLE}
    report = evaluate(maskers, size=args.size, frames_per_set=frames_per_set,
                      settings=settings, sets=sets)
    print(report.markdown())
    out = write_report(report, args.out, {"unet": unet.settings(),
                                          "classical": classical.settings(),
                                          "size_px": args.size})
    print(f"\nwrote {out / 'evaluation.md'} and {out / 'evaluation.json'}")
    if baseline is None:
        return 0
    return _gate(load_evaluation(out), baseline, release_gate)


def _gate(candidate: dict, baseline: dict | None, gate) -> int:
    """Print the release gate of ``candidate`` against ``baseline``; 0 passed, 1 refused."""
    assert baseline is not None
    result = gate(candidate, baseline)
    print("\n" + result.markdown())
    return 0 if result.passed else 1
