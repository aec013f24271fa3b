"""Which missed spots could any detector find? Spot recall by signal-to-noise ratio against the
photons and against the powder's own texture.

A faint spot on a grainy ring is a bump among bumps. The grains of the spot-free pattern
(``SimulatedFrame.spot_free``, noise-free) along the spot's ring give a matched filter of the
spot's size a spread of responses of their own, beside the photon and read noise. For each
labelled round spot (Gaussian and Lorentzian kinds; the filter is a Gaussian of the spot's
FWHM) of v4 spot frames (the seeds of `equal_specificity.py`: calibration
frames, never trained on or gated):

- ``S``: the spot's matched-filter response, ``peak · π σ²`` (σ = FWHM / 2.355, px);
- photon noise: ``sqrt(π σ² (gain · level + read_noise²))``, ``level`` the spot-free ring level
  at the spot (median of its 2θ, 0.25 px bins, within ±48 px);
- texture: the robust spread (1.4826 · MAD) of the same filter over the spot-free pattern minus
  that ring profile, on the pixels of the spot's ring (within 0.5 px of its 2θ, ±48 px).

``SNR = S / sqrt(photon² + texture²)``. An ideal linear detector holding 0.05 % false pixels on a
frame of that texture (a one-sided Gaussian tail at about 3.3 spreads) finds half the spots at
SNR ≈ 3.3 and few below; above 10 nothing but the detector stands in the way. The table gives
each model's spot recall (half a spot's labelled pixels masked, the card's threshold and
decision step) per SNR band, and the same by photon SNR alone.

    .venv/bin/python benchmarks/spot_ambiguity.py --model default \\
        --model runs/veto/v4-neg-sf --frames 8 --size 2880

``--list-missed`` also lists the first model's missed spots at SNR ≥ 5 (SNR, FWHM, peak over
the ring level, on a ring or not, kind, share of its pixels masked, largest spot probability on
it, labelled pixels, the frame's flux) and its recall at SNR ≥ 5 by FWHM and by peak.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.simulate import SimulatedFrame, known_phases, simulate_frame
from xrd_bluesky_mask.simulate.presets import HELD_OUT_PHASES
from xrd_bluesky_mask.simulate.random_scenes import random_scene

SPOT_SEED = 500_000  # equal_specificity.py's spot frames
HALF_PX = 48
BANDS = (0.0, 3.3, 5.0, 10.0, 20.0, np.inf)


def spot_frames(n: int, size: int) -> list[SimulatedFrame]:
    """The first ``n`` v4 spot frames of `equal_specificity.py` (seeds 500,000 + i)."""
    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    out = []
    for i in range(n):
        seed = SPOT_SEED + i
        scene = random_scene(np.random.default_rng(seed), shape=(size, size),
                             phase_pool=pool, scenes="v4")
        out.append(simulate_frame(scene, seed=seed))
    return out


def snr(sim: SimulatedFrame, spot, tth_px: np.ndarray) -> tuple[float, float, float]:
    """(combined, photon, texture) matched-filter SNR of one spot; ``tth_px``: 2θ in px of
    radius (2θ over the detector's 2θ per pixel)."""
    rows, cols = sim.image.shape
    r, c = int(round(spot.row)), int(round(spot.col))
    r0, r1 = max(r - HALF_PX, 0), min(r + HALF_PX + 1, rows)
    c0, c1 = max(c - HALF_PX, 0), min(c + HALF_PX + 1, cols)
    free = sim.spot_free[r0:r1, c0:c1].astype(np.float64)
    t = tth_px[r0:r1, c0:c1]
    bins = np.floor((t - t.min()) / 0.25).astype(int)
    profile = np.zeros(bins.max() + 1)
    for b in np.unique(bins):
        profile[b] = np.median(free[bins == b])
    residual = free - profile[bins]
    sigma = max(spot.size_px / 2.3548, 0.3)
    response = ndimage.gaussian_filter(residual, sigma, mode="nearest") * 2 * np.pi * sigma**2
    t_spot = tth_px[min(r, rows - 1), min(c, cols - 1)]
    ring = np.abs(t - t_spot) < 0.5
    vals = response[ring]
    texture = 1.4826 * float(np.median(np.abs(vals - np.median(vals)))) if vals.size > 8 else 0.0
    level = float(profile[bins[min(r, rows - 1) - r0, min(c, cols - 1) - c0]])
    noise = sim.config.noise
    photon = float(np.sqrt(np.pi * sigma**2 * (noise.gain * max(level, 0.0)
                                                + noise.read_noise**2)))
    signal = spot.peak_counts * np.pi * sigma**2
    return (signal / max(np.hypot(photon, texture), 1e-9), signal / max(photon, 1e-9),
            signal / max(texture, 1e-9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=2880)
    ap.add_argument("--list-missed", action="store_true")
    args = ap.parse_args()

    maskers = [UNetMasker(m) for m in args.model]
    rows = []  # (combined, photon, texture, found per model, details of the first model)
    others = 0
    for sim in spot_frames(args.frames, args.size):
        tth_px = sim.geometry.tth_deg() / sim.geometry.tth_per_pixel_deg()
        masks = [m.predict(sim.image, sim.geometry, extra_static=sim.static_mask)
                 for m in maskers]
        for spot in sim.spots:
            if spot.labelled_px == 0:
                continue
            if spot.kind not in ("gaussian", "lorentzian"):
                others += 1
                continue
            labelled = (sim.spot_ids == spot.spot_id) & ~masks[0].static
            if not labelled.any():
                continue
            found = [bool(res.spots[labelled].mean() >= 0.5) for res in masks]
            r, c = int(spot.row), int(spot.col)
            level = float(np.median(sim.spot_free[max(r - 3, 0):r + 4, max(c - 3, 0):c + 4]))
            prob = masks[0].probability
            details = (spot.size_px, spot.peak_counts / max(level, 1e-9), spot.on_ring,
                       spot.kind, float(masks[0].spots[labelled].mean()),
                       float(prob[labelled].max()) if prob is not None else float("nan"),
                       int(labelled.sum()), sim.config.flux)
            rows.append((*snr(sim, spot, tth_px), found, details))
    print(f"{args.size} px, {args.frames} v4 spot frames: {len(rows)} labelled round spots "
          f"(Gaussian, Lorentzian; {others} streaks, clusters, pairs and extreme pixels left "
          "out)\n")
    for title, col in (("SNR against photons and texture", 0), ("SNR against photons only", 1)):
        print(f"| {title} | spots | " + " | ".join(f"found: {m}" for m in args.model) + " |")
        print("|---|---:|" + "---:|" * len(maskers))
        for lo, hi in zip(BANDS[:-1], BANDS[1:], strict=True):
            band = [r for r in rows if lo <= r[col] < hi]
            cells = " | ".join(
                f"{np.mean([r[3][k] for r in band]):.2f}" if band else "-"
                for k in range(len(maskers)))
            print(f"| {lo:g} - {hi:g} | {len(band)} | {cells} |")
        print()
    if args.list_missed:
        _list_missed(rows, args.model[0])
    for k, m in enumerate(args.model):
        missed = [r for r in rows if not r[3][k]]
        below = sum(r[0] < BANDS[1] for r in missed)
        print(f"{m}: spot recall {1 - len(missed) / max(len(rows), 1):.3f}; of its "
              f"{len(missed)} missed spots {below} are below SNR {BANDS[1]:g} against photons "
              "and texture")


def _list_missed(rows: list, model: str) -> None:
    """The first model's missed spots at SNR >= 5, and its recall there by FWHM and by peak."""
    print(f"{model}: missed spots at SNR >= 5 against photons and texture\n")
    print("| SNR | FWHM px | peak / ring level | on ring | kind | masked | max probability "
          "| labelled px | flux |")
    print("|---:|---:|---:|---|---|---:|---:|---:|---:|")
    strong = [r for r in rows if r[0] >= 5]
    for r in sorted(strong, key=lambda r: r[0]):
        if not r[3][0]:
            size, peak, on_ring, kind, masked, pmax, px, flux = r[4]
            print(f"| {r[0]:.1f} | {size:.1f} | {peak:.2f} | {on_ring} | {kind} | {masked:.2f} "
                  f"| {pmax:.2f} | {px} | {flux:.0f} |")
    for title, col, edges in (("FWHM px", 0, (0, 2, 4, 8, np.inf)),
                              ("peak / ring level", 1, (0, 0.5, 1, 2, 5, np.inf))):
        print(f"\n| SNR >= 5, {title} | spots | found |\n|---|---:|---:|")
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            band = [r for r in strong if lo <= r[4][col] < hi]
            share = f"{np.mean([r[3][0] for r in band]):.2f}" if band else "-"
            print(f"| {lo:g} - {hi:g} | {len(band)} | {share} |")
    print()


if __name__ == "__main__":
    main()
