"""Scores of maskers on one simulated frame against the simulator's ground truth.

Per frame and masker (`score`, `score_frame`): pixel recall, true-negative rate, precision,
false-positive pixels, spot-level recall (a spot is found when at least 50 % of its pixels are
masked), also by the spot centre's distance to the nearest frame edge (`EDGE_BINS_PX`), the
masked share of the pixels that are not static (%), Rwp of the masked pattern against the
pattern of the spot-free image, and, on PO frames, the median relative error of the PO rings'
peak areas. `xrd-mask evaluate` (`xrd_bluesky_mask.apps.evaluate`) pools them per group; the
retraining gate's guard (`xrd_bluesky_mask.training.guard`) reads the masked share and Rwp.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..azimuthal import IntegrationSettings, integrate
from ..masking import Masker, get_masker
from ..masking.preprocess import prepare_frame
from ..metrics import pixel_metrics, rwp, spot_counts, spot_found

#: Upper bounds (px) of the bins of a spot centre's distance to the nearest frame edge.
EDGE_BINS_PX = (16, 64, 256)


def peak_areas(pattern: xr.DataArray, rings: list, *, half_width_fwhm: float = 1.5) -> np.ndarray:
    """Integrated area of each ring's peak above a linear baseline through the window edges."""
    tth = pattern["two_theta"].values
    y = pattern.values
    areas = []
    for ring in rings:
        half = half_width_fwhm * ring.fwhm_deg
        lo, hi = ring.tth_deg - half, ring.tth_deg + half
        sel = (tth >= lo) & (tth <= hi) & np.isfinite(y)
        if sel.sum() < 3:
            areas.append(np.nan)
            continue
        x, v = tth[sel], y[sel]
        base = np.interp(x, [x[0], x[-1]], [v[0], v[-1]])
        areas.append(float(np.trapezoid(v - base, x)))
    return np.asarray(areas)


def po_area_error(pattern: xr.DataArray, truth: xr.DataArray, sim, n_rings: int = 6) -> float:
    """Median |area - true area| / true area over the strongest PO rings (NaN without PO)."""
    if not sim.config.po.enabled or not sim.rings:
        return float("nan")
    true = peak_areas(truth, sim.rings)
    ok = np.isfinite(true) & (true > 0)
    if not ok.any():
        return float("nan")
    idx = np.argsort(np.where(ok, true, -np.inf))[::-1][: min(n_rings, int(ok.sum()))]
    got = peak_areas(pattern, [sim.rings[i] for i in idx])
    err = np.abs(got - true[idx]) / true[idx]
    # NaN when every PO ring's window lost its points in the masked pattern
    return float(np.nanmedian(err)) if np.isfinite(err).any() else float("nan")


#: Pass as a masker to score the ground-truth labels themselves (the best any masker can do).
ORACLE = "oracle"

#: A spot is "clear" when its peak excess is at least this many noise σ of its background.
CLEAR_SPOT_SIGMA = 10.0


def edge_bin_names() -> list[str]:
    """Names of the distance-to-edge bins: ``"0-16"``, ``"16-64"``, ``"64-256"``, ``">256"``."""
    lo = (0, *EDGE_BINS_PX)
    return [f"{a}-{b}" for a, b in zip(lo, EDGE_BINS_PX, strict=False)] + [
        f">{EDGE_BINS_PX[-1]}"]


def edge_spot_counts(sim, found: Mapping[int, bool]) -> dict[str, tuple[int, int]]:
    """``{bin: (found, total)}`` of the labelled spots by their centre's distance (px) to the
    nearest frame edge; ``found`` is `metrics.spot_found` of the mask (spot id → found)."""
    rows, cols = sim.spot_ids.shape
    names = edge_bin_names()
    out = {b: [0, 0] for b in names}
    for sp in sim.spots:
        if sp.spot_id not in found:
            continue
        d = min(sp.row, sp.col, rows - 1 - sp.row, cols - 1 - sp.col)
        b = names[int(np.searchsorted(EDGE_BINS_PX, max(d, 0.0), side="right"))]
        out[b][0] += int(found[sp.spot_id])
        out[b][1] += 1
    return {b: (f, n) for b, (f, n) in out.items()}


def clear_spot_ids(sim, nsigma: float = CLEAR_SPOT_SIGMA) -> np.ndarray:
    """Ids of the spots whose peak excess is ≥ ``nsigma`` σ of the spot-free level at their
    centre (σ = sqrt(gain·level + read_noise²)): spots a person sees at once. The labels also
    hold spots barely above the noise (3σ rule), which no masker can find reliably."""
    noise = sim.config.noise
    rows, cols = sim.spot_free.shape
    ids = []
    for sp in sim.spots:
        r = min(max(int(round(sp.row)), 0), rows - 1)
        c = min(max(int(round(sp.col)), 0), cols - 1)
        level = max(float(sim.spot_free[r, c]), 0.0)
        sigma = np.sqrt(noise.gain * level + noise.read_noise**2)
        if sp.peak_counts >= nsigma * max(sigma, 1e-6):
            ids.append(sp.spot_id)
    return np.asarray(ids, dtype=np.int32)


def clear_spot_image(sim) -> np.ndarray:
    """``sim.spot_ids`` with every spot that is not clear (`clear_spot_ids`) set to 0."""
    return np.where(np.isin(sim.spot_ids, clear_spot_ids(sim)), sim.spot_ids, 0)


def score(sim, masker: Masker | str | None, truth: xr.DataArray,
          settings: IntegrationSettings | None, *,
          clear_ids: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of one masker (None = static mask only, `ORACLE` = the labels) on one frame.

    ``clear_ids``: the frame's spot-id image restricted to `clear_spot_ids` (computed when None;
    pass it to score several maskers on one frame without recomputing it)."""
    geo = sim.geometry
    if masker is None or masker == ORACLE:
        _, static = prepare_frame(sim.image, geo, extra_static=sim.static_mask)
        spots = sim.labels & ~static if masker == ORACLE else np.zeros_like(static)
    else:
        chosen = get_masker(masker) if isinstance(masker, str) else masker
        res = chosen.predict(sim.image, geo, extra_static=sim.static_mask)
        spots, static = res.spots, res.static
    pattern = integrate(sim.image, geo, mask=spots | static, settings=settings)
    return score_mask(sim, spots, static, pattern, truth, clear_ids=clear_ids)


def score_mask(sim, spots: np.ndarray, static: np.ndarray, pattern: xr.DataArray,
               truth: xr.DataArray, *, clear_ids: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of a mask already made (bool ``spots`` and ``static`` ``(rows, cols)``) and of
    its masked ``pattern`` against the simulator's ground truth; see `score`."""
    valid = ~static
    pm = pixel_metrics(spots, sim.labels, valid)
    found = spot_found(spots, sim.spot_ids, valid)
    if clear_ids is None:
        clear_ids = clear_spot_image(sim)
    found_clear, total_clear = spot_counts(spots, clear_ids, valid)
    return {
        **{k: pm[k] for k in ("tp", "fp", "fn", "tn")},
        "masked_pct": 100.0 * float(spots[valid].mean()),  # see SPOTS_PCT_NOTE
        "spots": len(found),
        "spots_found": sum(found.values()),
        "clear_spots": total_clear,
        "clear_spots_found": found_clear,
        "rwp": rwp(pattern, truth),
        "po_area_error": po_area_error(pattern, truth, sim),
        "edge_spots": edge_spot_counts(sim, found),
    }


def score_frame(sim, maskers: Mapping[str, Masker | str | None],
                settings: IntegrationSettings | None = None) -> dict[str, dict[str, Any]]:
    """Metrics (`score`) of each masker on one simulated frame, ``{name: metrics}``: the row
    `evaluate` stores per frame under ``"maskers"``, for frames of any scene."""
    _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    truth = integrate(sim.spot_free, sim.geometry, mask=static, settings=settings)
    clear = clear_spot_image(sim)
    return {name: score(sim, m, truth, settings, clear_ids=clear) for name, m in maskers.items()}
