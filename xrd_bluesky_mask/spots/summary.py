"""One row per frame: how many spots, how much is masked, how textured the rings are, and how
much the masked pattern changed since the previous frame.

Columns (`SUMMARY_COLUMNS`):

``frame``
    Frame index in the run (0-based).
``spot_count``
    Spots in the frame's spot table (8-connected components of the spot mask).
``masked_pct``
    Spot pixels as a share of the pixels that are not static, %.
``texture_index``
    The rings' texture (`ring_texture`), weighted by each ring's intensity: 0 for rings
    even along χ, about 1 when the ring's level varies along χ as much as it is bright (the
    spots are removed first, so it is the powder's own texture and orientation).
``similarity_to_previous``
    Pearson correlation of the masked 1D pattern with the previous frame's (bins finite in
    both); NaN for the first frame. It falls when phases appear, vanish or shift.

The texture of one ring (`ring_texture`) is the coefficient of variation of its level along χ
after the spots are removed: ``std(m) / mean(m)`` over the χ modulations
``m`` of its (ring, χ-sector) cells (2 px of radius by about 64 px of arc; each the median of
pixel / the pixel's ring level, spots and their 2 px surroundings left out), for the rings
found as peaks of the masked pattern. ``ring_level_counts`` is the masked pattern's value at
the ring's peak.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .table import PowderLevel

#: Column names of the frame summary, in order.
SUMMARY_COLUMNS = ("frame", "spot_count", "masked_pct", "texture_index", "similarity_to_previous")
#: Column names of the per-ring texture table, in order.
TEXTURE_COLUMNS = ("frame", "two_theta_deg", "ring_level_counts", "texture_index")
#: Rings read per frame: the most prominent peaks of the masked pattern.
MAX_RINGS = 8


def ring_texture(pattern: xr.DataArray, level: PowderLevel, *, frame_index: int = 0,
                 max_rings: int = MAX_RINGS) -> pd.DataFrame:
    """The texture index of the rings of a frame (module docstring): one row per ring found
    in ``pattern`` (the masked 1D pattern, coordinate ``two_theta`` in degrees), at most
    ``max_rings``, strongest first."""
    from scipy.signal import find_peaks

    y = np.nan_to_num(np.asarray(pattern.values, np.float64), nan=0.0)
    tth = np.asarray(pattern["two_theta"].values, np.float64)
    if y.size < 5 or not np.any(y > 0):
        return _empty(TEXTURE_COLUMNS)
    spread = float(np.percentile(y, 90) - np.percentile(y, 10))
    peaks, props = find_peaks(y, prominence=max(0.05 * spread, 1e-12), width=1)
    order = np.argsort(props["prominences"])[::-1][:max_rings]
    cells = level.cells
    ring_tth = level.ring_tth_deg
    rows = []
    for k in order:
        p = peaks[k]
        half = max(float(props["widths"][k]) / 2, 1.0) * (tth[1] - tth[0] if tth.size > 1 else 1)
        near = np.flatnonzero(np.abs(ring_tth - tth[p]) <= half)
        m = level.cell_modulation[np.isin(cells.ring_of_cell, near)]
        m = m[np.isfinite(m)]
        if m.size < 4:
            continue
        mean = float(m.mean())
        index = float(m.std()) / mean if mean > 0 else np.nan
        rows.append((frame_index, float(tth[p]), float(y[p]), index))
    if not rows:
        return _empty(TEXTURE_COLUMNS)
    return pd.DataFrame(rows, columns=list(TEXTURE_COLUMNS))


def pattern_similarity(pattern: xr.DataArray | np.ndarray | None,
                       previous: xr.DataArray | np.ndarray | None) -> float:
    """Pearson correlation of two masked patterns over the bins finite in both (NaN when
    either is missing, or fewer than 3 bins are shared)."""
    if pattern is None or previous is None:
        return float("nan")
    a, b = np.asarray(pattern, np.float64), np.asarray(previous, np.float64)
    if a.shape != b.shape:
        return float("nan")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def frame_summary(frame_index: int, spots: np.ndarray, static: np.ndarray, spot_count: int,
                  texture: pd.DataFrame, similarity: float = float("nan")) -> dict[str, float]:
    """The frame summary row (`SUMMARY_COLUMNS`) of one frame."""
    valid = ~static
    masked = 100.0 * float(spots[valid].mean()) if valid.any() else float("nan")
    t = np.asarray(texture["texture_index"], np.float64)
    w = np.clip(np.asarray(texture["ring_level_counts"], np.float64), 0, None)
    ok = np.isfinite(t)
    if ok.any():
        index = (float(np.average(t[ok], weights=w[ok])) if float(w[ok].sum()) > 0
                 else float(t[ok].mean()))
    else:
        index = float("nan")
    return {"frame": int(frame_index), "spot_count": int(spot_count), "masked_pct": masked,
            "texture_index": index, "similarity_to_previous": float(similarity)}


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, np.int64 if c == "frame" else np.float64)
                         for c in columns}, columns=list(columns))
