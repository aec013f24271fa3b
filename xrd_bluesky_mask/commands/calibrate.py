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
    c.add_argument("--scenes", choices=["v2", "v3", "v4"], default=None,
                   help="simulated scene set (default: the one the model was trained on)")
    c.add_argument("--decision", default="card", metavar="card|off|K=V,...",
                   help="decision step after the threshold, written to the card with it: "
                   "the card's (default), none (off), or DecisionRule fields, e.g. "
                   "grow_z=4,extreme_z=50")
    c.add_argument("--spot-free-against", default=None, metavar="MODEL",
                   help="also raise the threshold until the model masks no more pixels than "
                   "MODEL (a name, e.g. default, or a folder) on frames of every spot-free "
                   "style of the release gate: calibrate a candidate where the gate judges it")
    c.add_argument("--spot-free-frames", type=int, default=1,
                   help="with --spot-free-against: frames of each spot-free style (default 1)")
    c.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    return c


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..errors import ConfigError
    from ..masking.decision import DecisionRule
    from ..training.calibrate import calibrate_threshold, write_threshold

    if not 0.5 < args.target_tnr < 1:
        raise ConfigError(f"--target-tnr {args.target_tnr:g}: must be in (0.5, 1)")
    if args.spot_free_frames < 1:
        raise ConfigError(f"--spot-free-frames {args.spot_free_frames}: must be 1 or more")
    cal = calibrate_threshold(args.model, frames=args.frames, size=args.size,
                              target_tnr=args.target_tnr, scenes=args.scenes,
                              decision=_rule(args.decision, DecisionRule),
                              spot_free_against=args.spot_free_against,
                              spot_free_frames=args.spot_free_frames)
    print(f"threshold {cal['threshold']:.4f}: TNR {cal['tnr']:.5f}, recall {cal['recall']:.4f} "
          f"on {cal['frames']} {cal['scenes']} frames of {cal['size_px']} px "
          f"(decision step: {cal['decision']})")
    if "spot_free" in cal:
        bound = cal["spot_free"]
        print(f"masked pixels on {bound['frames']} spot-free frame(s) of each style, this "
              f"model / {bound['against']}: " + ", ".join(
                  f"{style} {v['masked_px']} / {v['against_px']}"
                  for style, v in bound["styles"].items()))
    if not args.dry_run:
        print(f"wrote {write_threshold(args.model, cal)}")
    return 0


def _rule(spec: str, rule_type: type) -> object | None:
    """``--decision``: None for the card's rule, else a rule (``off`` = the plain threshold)."""
    from ..errors import ConfigError

    if spec == "card":
        return None
    if spec == "off":
        return rule_type.off()
    try:
        fields = dict(item.split("=", 1) for item in spec.split(","))
        typed = {"grow_px": int, "level": str}
        return rule_type.from_dict({k.strip(): typed.get(k.strip(), float)(v.strip())
                                    for k, v in fields.items()})
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--decision {spec!r}: give card, off or fields of the decision "
                          f"rule such as grow_z=4,extreme_z=50,level=local ({err})") from None
