"""Two models at equal specificity: recall against false positives on spot-free frames, by
threshold.

A candidate that finds more spots at its own calibrated threshold may only have moved along
the same trade-off. This runs each model (its card's decision step) over a range of thresholds
on spot-free frames (the ``negatives`` set's scenes: grainy texture at high and low counts,
oriented sharp rings, integer-count sharp rings) and on v4 spot frames, all with seeds neither
training (below 500,000), the gate (from 1,000,000) nor the veto's settings use (spot frames
are calibration frames, 500,000 + i), and prints the masked pixels per spot-free style with the
pixel and spot recall on the spot frames: read the recall of each model where their
false positives on the texture frames match. ``A+B`` stands for the mean spot probability of
two models (each with its own input statistics; the first one's decision step): does a pair
find more at equal specificity than either alone?

    .venv/bin/python benchmarks/equal_specificity.py --model default \\
        --model runs/veto/v4=0.43,0.5,0.55,0.6 --frames 2 --size 2880
    .venv/bin/python benchmarks/equal_specificity.py \\
        --model default+runs/veto/v4-neg-sf=0.4,0.45,0.5,0.55,0.6 --frames 2 --size 2880
"""

from __future__ import annotations

import argparse

import numpy as np

from xrd_bluesky_mask.masking.decision import decide
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.simulate import SimulatedFrame, known_phases, simulate_frame
from xrd_bluesky_mask.simulate.heldout import Case, negative_scene
from xrd_bluesky_mask.simulate.presets import HELD_OUT_PHASES
from xrd_bluesky_mask.simulate.random_scenes import random_scene

SPOT_FREE_SEED, SPOT_SEED = 620_000, 500_000
SPOT_FREE = ("grainy_high", "grainy_low", "po_sharp", "sharp_rings_int")


def frames(n: int, size: int) -> list[tuple[str, SimulatedFrame]]:
    """Per i: one frame of each spot-free style and two v4 spot frames."""
    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    out = []
    for i in range(n):
        for style in SPOT_FREE:
            case = Case("negatives", style, SPOT_FREE_SEED + i)
            out.append((style, simulate_frame(negative_scene(case, size), seed=case.seed)))
        for k in range(2):
            seed = SPOT_SEED + 2 * i + k
            scene = random_scene(np.random.default_rng(seed), shape=(size, size),
                                 phase_pool=pool, scenes="v4")
            out.append(("spots", simulate_frame(scene, seed=seed)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="MODEL[=T1,T2,...]",
                    help="a model (or A+B, the mean probability of two) and the thresholds "
                         "to try (default: the (first) card's)")
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--size", type=int, default=2880)
    args = ap.parse_args()

    sims = frames(args.frames, args.size)
    print(f"{args.size} px: {args.frames} frame(s) of each spot-free style, "
          f"{2 * args.frames} spot frames; masked pixels per spot-free style (summed)\n")
    print("| model | threshold | " + " | ".join(SPOT_FREE) + " | pixel recall | spot recall |")
    print("|---|---:|" + "---:|" * (len(SPOT_FREE) + 2))
    for spec in args.model:
        path, _, cuts = spec.partition("=")
        maskers = [UNetMasker(part) for part in path.split("+")]
        masker = maskers[0]
        thresholds = [float(t) for t in cuts.split(",")] if cuts else [masker.threshold]
        fp = {t: dict.fromkeys(SPOT_FREE, 0) for t in thresholds}
        tp = dict.fromkeys(thresholds, 0)
        found = dict.fromkeys(thresholds, 0)
        positives = spots = 0
        for style, sim in sims:
            f32, static, x, stats = masker.inputs_and_stats(sim.image, sim.geometry,
                                                            extra_static=sim.static_mask)
            prob, _ = masker.probability(x)
            for other in maskers[1:]:
                x_other = other.inputs_and_stats(sim.image, sim.geometry,
                                                 extra_static=sim.static_mask)[2]
                prob = prob + other.probability(x_other)[0]
            prob = prob / len(maskers)
            truth = sim.labels & ~static
            ids = sim.spot_ids[truth]
            count = np.bincount(ids)
            if style == "spots":
                positives += int(truth.sum())
                spots += int((count > 0).sum())
            for t in thresholds:
                mask = decide((prob >= t) & ~static, f32, static, stats, masker.decision)
                if style != "spots":
                    fp[t][style] += int(mask.sum())
                    continue
                tp[t] += int((mask & truth).sum())
                hit = np.bincount(ids, weights=mask[truth], minlength=len(count))
                found[t] += int(((hit >= 0.5 * count) & (count > 0)).sum())
        for t in thresholds:
            cells = " | ".join(str(fp[t][s]) for s in SPOT_FREE)
            print(f"| {path} | {t:.3f} | {cells} | {tp[t] / max(positives, 1):.4f} | "
                  f"{found[t] / max(spots, 1):.4f} |", flush=True)


if __name__ == "__main__":
    main()
