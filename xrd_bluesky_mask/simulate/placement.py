"""Where the random spots of a scene go and what they look like: on rings or between them,
near edges, corners and module gaps, streaks along or across the rings, extreme sub-pixel
spots on ring centres (`~xrd_bluesky_mask.simulate.scene.Spots`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage

from .powder import RingInfo
from .scene import SceneConfig
from .spots import SpotShape, draw_shape


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass
class Placed:
    """A spot to render: its shape, centre (px), peak amplitude (counts), kind, on a ring."""

    shape: SpotShape
    row: float
    col: float
    amp: float
    kind: str
    on_ring: bool


def _near_edge_candidates(config: SceneConfig, cand: np.ndarray, gaps: np.ndarray,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Of the candidate pixels (flat indices), those within ``near_edge_px`` of the frame's
    edge or a module gap, and those within it of two edges (corners)."""
    h, w = config.shape
    e = config.spots.near_edge_px
    r, c = cand // w, cand % w
    d_row = np.minimum(r, h - 1 - r)
    d_col = np.minimum(c, w - 1 - c)
    near = np.minimum(d_row, d_col) <= e
    if gaps.any():
        # distances only (no indices asked for): one array
        near |= cast(np.ndarray, ndimage.distance_transform_edt(~gaps)).ravel()[cand] <= e
    corner = (d_row <= e) & (d_col <= e)
    return cand[near], cand[corner]


def _streak_angle(config: SceneConfig, row: float, col: float,
                  rng: np.random.Generator) -> float | None:
    """Streak direction, degrees (`spots.Streak` convention), or None for a random one."""
    mode = config.spots.streak_orientation
    if mode == "mixed":
        mode = ("random", "radial", "tangential")[int(rng.integers(3))]
    if mode == "random":
        return None
    cy, cx = config.center_px
    radial = math.degrees(math.atan2(row - cy, col - cx))
    return radial + (90.0 if mode == "tangential" else 0.0) + float(rng.uniform(-10.0, 10.0))


def place_spots(config: SceneConfig, spot_free: np.ndarray, static: np.ndarray,
                rings: list[RingInfo], tth: np.ndarray, rng: np.random.Generator,
                gaps: np.ndarray | None = None) -> list[Placed]:
    """The scene's fixed spots, then ``config.spots.count`` random ones: position (px), shape,
    amplitude (counts over the spot-free level ``spot_free``), never on ``static`` pixels."""
    sp = config.spots
    h, w = config.shape
    read = config.noise.read_noise
    sat = config.detector.saturation
    placed: list[Placed] = []
    shape_opts = {"moffat_beta": sp.moffat_beta, "reach_px": sp.reach_px,
                  "streak_taper": sp.streak_taper}

    def level(r: float, c: float) -> float:
        return float(spot_free[min(max(int(r), 0), h - 1), min(max(int(c), 0), w - 1)])

    for f in sp.fixed:
        shape = draw_shape("gaussian" if f.kind == "pair" else f.kind, f.size_px, rng,
                           angle_deg=f.angle_deg, aspect=f.aspect, **shape_opts)
        amp = (f.peak_counts if f.peak_counts is not None
               else f.peak_rel * max(level(f.row, f.col), 1.0))
        placed.append(Placed(shape, f.row, f.col, amp, f.kind, False))
    if sp.count == 0:
        return placed
    cand = rng.integers(0, h * w, min(h * w, 200_000))
    cand = cand[~static.ravel()[cand]]
    if cand.size == 0:
        return placed
    cand_tth = tth.ravel()[cand]
    edge_cand = corner_cand = cand[:0]  # drawn from only with near_edge_fraction > 0
    if sp.near_edge_fraction > 0:
        edge_cand, corner_cand = _near_edge_candidates(
            config, cand, gaps if gaps is not None else np.zeros((h, w), dtype=bool))
    kinds = list(sp.kinds)
    kw = np.array([sp.kinds[k] for k in kinds], dtype=float)
    kw /= kw.sum()
    ring_w = np.sqrt(np.array([r.peak_counts for r in rings])) if rings else None
    if ring_w is not None:
        ring_w = ring_w / ring_w.sum()
    for _ in range(sp.count):
        extreme = bool(rings) and sp.extreme_fraction > 0 and rng.random() < sp.extreme_fraction
        on_ring = extreme or (bool(rings) and rng.random() < sp.on_ring_fraction)
        idx = None
        if on_ring:
            ring = rings[int(rng.choice(len(rings), p=ring_w))]
            width = (0.2 if extreme else 0.5) * ring.fwhm_deg
            near = np.flatnonzero(np.abs(cand_tth - ring.tth_deg) < width)
            if near.size:
                idx = int(cand[near[int(rng.integers(near.size))]])
            else:
                on_ring = False
        if (idx is None and not extreme and sp.near_edge_fraction > 0
                and rng.random() < sp.near_edge_fraction):
            pool = corner_cand if corner_cand.size and rng.random() < 0.25 else edge_cand
            if pool.size:
                idx = int(pool[int(rng.integers(pool.size))])
        if idx is None:
            idx = int(cand[int(rng.integers(cand.size))])
        row = idx // w + float(rng.uniform(-0.5, 0.5))
        col = idx % w + float(rng.uniform(-0.5, 0.5))
        kind = kinds[int(rng.choice(len(kinds), p=kw))]
        size = _log_uniform(rng, *sp.size_px)
        lev = level(row, col)
        ref = max(lev, read, 1.0)
        saturating = rng.random() < sp.saturated_fraction
        if saturating:
            amp = sat * float(rng.uniform(1.2, 4.0))
        else:
            amp = _log_uniform(rng, *sp.rel_brightness) * ref
        if extreme:
            kind, size = "extreme", float(rng.uniform(0.3, 1.2))
            amp = max(amp, _log_uniform(rng, 30.0, 3000.0) * ref)
        angle = None
        if kind == "streak" and sp.streak_length_px is not None:
            size = _log_uniform(rng, *sp.streak_length_px)
            angle = _streak_angle(config, row, col, rng)
        if kind == "pair":
            size = min(size, 6.0)
            sep = max(float(rng.uniform(1.2, 3.5)) * size, 2.0)
            ang = float(rng.uniform(0.0, 2.0 * math.pi))
            for sgn, scale in ((-0.5, 1.0), (0.5, float(rng.uniform(0.3, 1.0)))):
                sub = "gaussian" if rng.random() < 0.7 else "lorentzian"
                placed.append(Placed(draw_shape(sub, size * float(rng.uniform(0.7, 1.0)), rng,
                                                 **shape_opts),
                                      row + sgn * sep * math.sin(ang),
                                      col + sgn * sep * math.cos(ang),
                                      amp * scale, "pair", on_ring))
        else:
            placed.append(Placed(draw_shape(kind, size, rng, angle_deg=angle, **shape_opts),
                                  row, col, amp, kind, on_ring))
    return placed
