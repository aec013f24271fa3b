"""Measure the decision step after the network (`xrd_bluesky_mask.masking.decision`).

Scores one U-Net model with the plain threshold and with each decision rule on the held-out
groups of ``xrd-mask evaluate`` (same frames, the network run once per frame), and prints the
tables: keep a rule only if it is better at the same true-negative rate.

    .venv/bin/python benchmarks/decision_step.py --model default --size 1024 --frames-per-set 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xrd_bluesky_mask.apps.evaluate import SETS, evaluate
from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.masking.decision import DecisionRule, decide
from xrd_bluesky_mask.protocols import MaskResult

RULES = {
    "extreme (ring median)": DecisionRule(extreme_z=50.0, extreme_ratio=50.0, level="ring"),
    "extreme (local)": DecisionRule(extreme_z=50.0, extreme_ratio=50.0),
    "extreme 30x (local)": DecisionRule(extreme_z=50.0, extreme_ratio=30.0),
    "grow z>4 (local)": DecisionRule(grow_z=4.0),
    "grow z>4 + extreme (local)": DecisionRule(grow_z=4.0, extreme_z=50.0, extreme_ratio=50.0),
}


class _Shared:
    """The network's plain-threshold result and the statistics of the frame last seen,
    computed once."""

    def __init__(self, masker) -> None:
        self.masker, self._key, self._value = masker, None, None

    def get(self, frame, geometry, extra_static):
        if self._key is not frame:
            res = self.masker.predict(frame, geometry, extra_static=extra_static)
            f32, _, _, stats = self.masker.inputs_and_stats(frame, geometry,
                                                            extra_static=extra_static)
            self._key, self._value = frame, (res, f32, stats)
        return self._value


class _Decided:
    def __init__(self, shared: _Shared, rule: DecisionRule | None) -> None:
        self.shared, self.rule = shared, rule

    def predict(self, frame, geometry, *, extra_static=None) -> MaskResult:
        res, f32, stats = self.shared.get(frame, geometry, extra_static)
        spots = res.spots & ~res.static
        if self.rule is not None:
            spots = decide(spots, f32, res.static, stats, self.rule)
        return MaskResult(spots=spots, static=res.static, probability=res.probability)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--frames-per-set", type=int, default=3)
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--out", type=Path, default=None, help="write the summary JSON here")
    args = ap.parse_args()
    shared = _Shared(get_masker("unet", model=args.model, decision=DecisionRule.off()))
    maskers = {"threshold": _Decided(shared, None),
               **{name: _Decided(shared, rule) for name, rule in RULES.items()}}
    report = evaluate(maskers, size=args.size, frames_per_set=args.frames_per_set,
                      sets=tuple(args.sets))
    print(report.markdown())
    print()
    print(report.edge_markdown())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "size": args.size,
                                        "rules": {k: v.to_dict() for k, v in RULES.items()},
                                        "summary": report.summary()}, indent=1, default=float))


if __name__ == "__main__":
    main()
