"""Choose the decision step's veto settings on frames no other step uses.

Runs one U-Net model (plain threshold) on simulated frames with seeds that neither training
(below 500,000), calibration (500,000 + i) nor ``xrd-mask evaluate`` (from 1,000,000) draws,
then applies `veto_components` with each setting and prints what it removes: false-positive
pixels (not labelled spots) and true ones, of the pixels the network found. Pick the setting
that removes the most false positives for a loss of true pixels you accept; then calibrate and
gate the model with it (evaluation/gate-1024/README.md).

    .venv/bin/python benchmarks/veto_settings.py --model runs/default-v4-ft/best \\
        --threshold 0.465 --frames 16 --size 1024
"""

from __future__ import annotations

import argparse

import numpy as np

from xrd_bluesky_mask.masking.decision import DecisionRule, veto_components
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.simulate import known_phases, simulate_frame
from xrd_bluesky_mask.simulate.presets import HELD_OUT_PHASES
from xrd_bluesky_mask.simulate.random_scenes import random_scene

#: First seed of the frames (training < 500,000; calibration 500,000-; evaluation 1,000,000-).
SEED = 600_000
SETTINGS = ([(r, 2.5) for r in (1.0, 1.1, 1.2, 1.3, 1.5)]
            + [(1.2, 2.0), (1.2, 4.0), (1.2, 8.0), (1.3, 4.0)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--threshold", type=float, default=None, help="default: the card's")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scenes", default="v4")
    args = ap.parse_args()

    masker = UNetMasker(args.model, threshold=args.threshold, decision=DecisionRule.off())
    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    fp = dict.fromkeys(SETTINGS, 0)
    tp = dict.fromkeys(SETTINGS, 0)
    fp_all = tp_all = 0
    for i in range(args.frames):
        seed = SEED + i
        sim = simulate_frame(random_scene(np.random.default_rng(seed), shape=(args.size,) * 2,
                                          phase_pool=pool, scenes=args.scenes), seed=seed)
        f32, static, x, stats = masker.inputs_and_stats(sim.image, sim.geometry,
                                                        extra_static=sim.static_mask)
        prob, _ = masker.probability(x)
        spots = (prob >= masker.threshold) & ~static
        truth = sim.labels & ~static
        fp_all += int((spots & ~truth).sum())
        tp_all += int((spots & truth).sum())
        for ratio, local in SETTINGS:
            dropped = spots & ~veto_components(spots, f32, static, stats, ratio, local)
            fp[(ratio, local)] += int((dropped & ~truth).sum())
            tp[(ratio, local)] += int((dropped & truth).sum())
        print(f"frame {i + 1}/{args.frames} (seed {seed})", flush=True)
    print(f"\n{args.frames} frames of {args.size} px, {args.scenes} scenes, model {args.model}, "
          f"threshold {masker.threshold:.4f}: the network found {fp_all} false-positive and "
          f"{tp_all} true spot pixels\n")
    print("| veto_ratio | veto_local | false positives removed | true spot pixels lost |")
    print("|---:|---:|---:|---:|")
    for s in SETTINGS:
        print(f"| {s[0]:g} | {s[1]:g} | {fp[s]} ({100 * fp[s] / max(fp_all, 1):.1f} %) | "
              f"{tp[s]} ({100 * tp[s] / max(tp_all, 1):.2f} %) |")


if __name__ == "__main__":
    main()
