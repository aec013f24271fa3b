"""Can ring statistics tell a grain of a textured ring from a single-crystal spot?

Runs one U-Net model (plain threshold) on spot-free grainy frames (the ``negatives`` set's
``grainy_high`` and ``grainy_low`` scenes) and on spot frames (v4 scenes), with seeds that
neither training (below 500,000), calibration (500,000 + i), the veto's settings (600,000 + i
spot frames, reused here as the spot frames) nor ``xrd-mask evaluate`` (from 1,000,000) uses
for spot-free frames. Each component the network finds has its brightest pixel held against
statistics of the powder around it:

``own ring, q``
    quantile ``q`` of the pixels of its own ring within the ±32 px window around the pixel,
    the network's pixels left out (`windows.window_quantiles`);
``mirror, q``
    the same around the pixel at χ + 180° (what the veto uses, q = 0.9).

For each statistic and cut the table says what dropping the components whose peak is below
``cut`` times it would cost: the false-positive pixels it removes on the spot-free frames
against the true spot components (half of their pixels labelled) and pixels it loses.

    .venv/bin/python benchmarks/texture_components.py --model runs/veto/v4 --frames 4 --size 2880
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import numpy as np

from xrd_bluesky_mask.masking import windows
from xrd_bluesky_mask.masking.decision import component_labels
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.simulate import SimulatedFrame, known_phases, simulate_frame
from xrd_bluesky_mask.simulate.heldout import Case, negative_scene
from xrd_bluesky_mask.simulate.presets import HELD_OUT_PHASES
from xrd_bluesky_mask.simulate.random_scenes import random_scene

SPOT_SEED, TEXTURE_SEED = 600_000, 610_000
CUTS = (1.0, 1.1, 1.2, 1.5, 2.0)


def frames(n: int, size: int) -> Iterator[tuple[bool, SimulatedFrame]]:
    """``(spot_free, frame)``: per i, a grainy_high, a grainy_low and a v4 spot frame."""
    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    for i in range(n):
        for style in ("grainy_high", "grainy_low"):
            case = Case("negatives", style, TEXTURE_SEED + i)
            yield True, simulate_frame(negative_scene(case, size), seed=case.seed)
        seed = SPOT_SEED + i
        scene = random_scene(np.random.default_rng(seed), shape=(size, size), phase_pool=pool,
                             scenes="v4")
        yield False, simulate_frame(scene, seed=seed)


def components(masker: UNetMasker, sim: SimulatedFrame) -> dict[str, np.ndarray]:
    """Per component of the thresholded network output: size, labelled share, peak and the
    window statistics of the module docstring."""
    f32, static, x, stats = masker.inputs_and_stats(sim.image, sim.geometry,
                                                    extra_static=sim.static_mask)
    prob, _ = masker.probability(x)
    spots = (prob >= masker.threshold) & ~static
    labels, n = component_labels(spots)
    if n == 0:
        return {}
    valid = ~static & (f32 >= 0)
    members = np.flatnonzero(labels)
    label = labels.ravel()[members]
    order = np.lexsort((np.where(static.ravel()[members], -np.inf, f32.ravel()[members]),
                        label))
    flat = members[order[np.r_[np.flatnonzero(np.diff(label[order])), len(order) - 1]]]
    size = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    labelled = np.bincount(labels.ravel(), weights=sim.labels.ravel(), minlength=n + 1)[1:]
    twin = windows.opposite_pixels(stats.geometry, stats.ring.bins, flat)
    out = {"size": size, "share": labelled / size, "peak": f32.ravel()[flat]}
    for q in (0.9, 0.99, 1.0):
        out[f"own ring, {q:g}"] = windows.window_quantiles(f32, valid & ~spots, stats.geometry,
                                                           flat, q=q)
        out[f"mirror, {q:g}"] = windows.window_quantiles(f32, valid, stats.geometry, twin, q=q)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--threshold", type=float, default=None, help="default: the card's")
    ap.add_argument("--frames", type=int, default=4, help="frames of each kind")
    ap.add_argument("--size", type=int, default=2880)
    args = ap.parse_args()

    masker = UNetMasker(args.model, threshold=args.threshold)
    neg: list[dict[str, np.ndarray]] = []
    pos: list[dict[str, np.ndarray]] = []
    for spot_free, sim in frames(args.frames, args.size):
        comp = components(masker, sim)
        if comp:
            if spot_free:
                neg.append(comp)
            else:
                pos.append({k: v[comp["share"] >= 0.5] for k, v in comp.items()})
        print(f"{'spot-free' if spot_free else 'spots'} frame, seed {sim.seed}: "
              f"{len(comp.get('size', ()))} components", flush=True)
    n, p = ({k: np.concatenate([c[k] for c in cs]) for k in cs[0]} for cs in (neg, pos))
    print(f"\n{args.size} px, model {args.model}, threshold {masker.threshold:.4f}: "
          f"{len(n['size'])} components ({int(n['size'].sum())} px) on {2 * args.frames} "
          f"spot-free grainy frames, {len(p['size'])} true spot components "
          f"({int(p['size'].sum())} px) on {args.frames} spot frames\n")
    print("| peak below cut x | cut | spot-free false-positive px removed | "
          "spot components lost | spot px lost |")
    print("|---|---:|---:|---:|---:|")
    stats: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
        name: (lambda c, name=name: c[name])
        for name in ("own ring, 0.99", "own ring, 1", "mirror, 0.9", "mirror, 1")}
    stats["max(own ring, mirror), 0.99"] = lambda c: np.fmax(c["own ring, 0.99"],
                                                            c["mirror, 0.99"])
    for name, stat in stats.items():
        for cut in CUTS:
            dn = n["peak"] < cut * np.nan_to_num(stat(n), nan=-np.inf)
            dp = p["peak"] < cut * np.nan_to_num(stat(p), nan=-np.inf)
            print(f"| {name} | {cut:g} | {int(n['size'][dn].sum())} "
                  f"({100 * n['size'][dn].sum() / n['size'].sum():.0f} %) | "
                  f"{int(dp.sum())} ({100 * dp.mean():.1f} %) | "
                  f"{int(p['size'][dp].sum())} ({100 * p['size'][dp].sum() / p['size'].sum():.2f}"
                  " %) |")


if __name__ == "__main__":
    main()
