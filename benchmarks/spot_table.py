"""The spot table against the simulator's ground truth.

For held-out simulated frames with known spots, masks each frame (the packaged model, or the
ground-truth labels with ``--masker truth``), builds its spot table and prints, per scene:
spots in the table, the share matched to a true spot centre within 2 px, and for isolated
spots (one true spot in the component, no other spot within 8 px) the median and 90th
percentile of |integrated net - true| / true, the true value being the spot's excess over the
spot-free image summed over its pixels.

    .venv/bin/python benchmarks/spot_table.py --size 1024 --frames 2 --masker truth
"""

from __future__ import annotations

import argparse

from xrd_bluesky_mask.apps.spot_accuracy import spot_table_accuracy as measure
from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.masking.preprocess import prepare_frame
from xrd_bluesky_mask.simulate import preset, simulate_frame

STYLES = ("rings_spots", "spots_po", "spots_texture")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=2, help="frames per scene")
    ap.add_argument("--masker", default="unet", help="unet, classical or truth")
    args = ap.parse_args()
    masker = None if args.masker == "truth" else get_masker(args.masker)
    print(f"masker {args.masker}, {args.size} px, {args.frames} frames per scene\n")
    print("| scene | rows | matched ≤ 2 px | isolated | median |ΔI|/I | p90 |ΔI|/I |")
    print("|---|---:|---:|---:|---:|---:|")
    for style in STYLES:
        for k in range(args.frames):
            sim = simulate_frame(preset(style, shape=(args.size, args.size)), seed=1_002_000 + k)
            if masker is None:
                _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
                spots, prob = sim.labels & ~static, None
            else:
                res = masker.predict(sim.image, sim.geometry, extra_static=sim.static_mask)
                spots, static, prob = res.spots, res.static, res.probability
            m = measure(sim, spots, static, prob)
            print(f"| {style} #{k} | {m['rows']} | {m['matched']:.3f} | {m['isolated']} | "
                  f"{m['err_median']:.3f} | {m['err_p90']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
