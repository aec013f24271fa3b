"""What the mask found, as data: one row per masked spot of a frame.

A spot is an 8-connected component of the spot mask: spots whose masks touch (close pairs,
clusters) share one row, at their joint centroid. Its intensities are net of the powder
under it, estimated with the spots left out: the median of the pixel's 2θ ring (rings
`LEVEL_BIN_PX` px wide, so a sharp ring's crest is its own level) times the χ modulation of the
pixel's (ring, χ-sector) cell (the median of pixel / ring level over the cell), so a spot on a
preferred-orientation band or a grainy ring is measured above that band or grain level, not
above the ring's mean. Pixels within `EXCLUDE_PX` of a masked pixel are left out of the level
as well (a spot's faint wings are not powder).

Columns (`COLUMNS`; units in the names):

``frame``
    Frame index in the run (0-based).
``row_px``, ``col_px``
    Centroid, px (pixel ``(i, j)`` has its centre at ``(i, j)``), weighted by the net
    intensity (the pixels' geometric centre where no pixel is above the level).
``two_theta_deg``, ``chi_deg``, ``q_inv_angstrom``
    Scattering angle 2θ and azimuth χ of the centroid (degrees), and
    q = 4π sin(θ) / λ (Å⁻¹).
``area_px``
    Masked pixels of the spot.
``peak_net_counts``, ``integrated_net_counts``
    Largest and summed excess of the spot's pixels over the powder level, counts.
``elongation``
    sqrt(λ₁ / λ₂) of the net-intensity-weighted second moments (1 = round; a streak is long).
``orientation_deg``
    Angle of the long axis to the radial direction through the centroid, 0-90° (0: along
    the radius, 90: along the ring); NaN for a round spot (elongation < 1.05).
``mean_probability``
    Mean spot probability of the network over the spot's pixels; NaN where the masker gives
    no probability (the batched fast path, the classical filter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import GeometryError
from ..geometry import Geometry
from ..masking.decision import component_labels
from ..masking.rings import SectorBins, binned_medians, ring_stats, sector_bins

#: Ring width of the powder level under a spot, px of radius.
LEVEL_BIN_PX = 0.5
#: Pixels this close to a masked pixel stay out of the powder level, px.
EXCLUDE_PX = 2
#: Column names of the spot table, in order.
COLUMNS = ("frame", "row_px", "col_px", "two_theta_deg", "chi_deg", "q_inv_angstrom", "area_px",
           "peak_net_counts", "integrated_net_counts", "elongation", "orientation_deg",
           "mean_probability")


@dataclass(frozen=True)
class PowderLevel:
    """The powder level under every pixel with the spots left out (module docstring), and the
    (ring, χ-sector) cell medians it was made from (the texture index reads them).

    Attributes
    ----------
    cells
        The cells: rings 2 px wide, sectors about 64 px of arc (`rings.sector_bins`).
    cell_modulation
        float32 ``(n_cells,)``: each cell's χ modulation, the median over its powder pixels
        (at most 32 a cell, as `rings.sector_bins` samples them) of pixel / its fine ring's
        level (1 on an even ring; NaN where the cell has none).
    ring_tth_deg
        float64 ``(n_rings,)`` 2θ at the centre of each ring of the cells, degrees.
    ring_level
        float32 ``(rows, cols)``: the median of each pixel's fine 2θ ring alone, counts.
    powder
        bool ``(rows, cols)``: the pixels the level was made from (valid, away from spots).
    """

    cells: SectorBins
    cell_modulation: np.ndarray
    ring_tth_deg: np.ndarray
    ring_level: np.ndarray
    powder: np.ndarray

    @property
    def image(self) -> np.ndarray:
        """float32 ``(rows, cols)``: the level under every pixel, its ring's level times its
        cell's modulation, counts (made on demand: the tables need it at the spots alone)."""
        modulation = np.nan_to_num(self.cell_modulation, nan=1.0)[self.cells.index]
        return (self.ring_level.ravel() * modulation).reshape(self.ring_level.shape)

    def at(self, flat: np.ndarray) -> np.ndarray:
        """The level at the pixels of flat indices ``flat``, counts (float32)."""
        modulation = np.nan_to_num(self.cell_modulation, nan=1.0)[self.cells.index[flat]]
        return self.ring_level.ravel()[flat] * modulation


def _near(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` px (city-block: what ``radius`` iterations of
    `scipy.ndimage.binary_dilation` give), set pixel by pixel: a few spot pixels in a large
    frame cost their own number of writes, not the frame's."""
    out = mask.copy()
    rows, cols = np.nonzero(mask)
    n_rows, n_cols = mask.shape
    for dr in range(-radius, radius + 1):
        span = radius - abs(dr)
        for dc in range(-span, span + 1):
            if dr == dc == 0:
                continue
            r, c = rows + dr, cols + dc
            ok = (r >= 0) & (r < n_rows) & (c >= 0) & (c < n_cols)
            out[r[ok], c[ok]] = True
    return out


def powder_level(frame32: np.ndarray, spots: np.ndarray, static: np.ndarray,
                 geometry: Geometry) -> PowderLevel:
    """The powder level under every pixel with the spots left out (see the module docstring)."""
    keep = ~static & (frame32 >= 0)
    if spots.any():
        keep &= ~_near(spots, EXCLUDE_PX)
    fine = ring_stats(frame32, keep, geometry, bin_px=LEVEL_BIN_PX, max_per_bin=256)
    ring_level = np.nan_to_num(fine.median, nan=0.0)[fine.bins.index].astype(np.float32)
    cells = sector_bins(geometry, 2.0, 64.0)
    # the χ modulation at the cells' sampled pixels alone
    ring = ring_level[cells.order]
    ok = keep.ravel()[cells.order] & (ring > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (frame32.ravel()[cells.order] / np.where(ok, ring, 1.0)).astype(np.float32)
    modulation = binned_medians(ratio, ok & np.isfinite(ratio), cells)
    ring_tth = float(geometry.tth_deg().min()) + (np.arange(cells.ring_of_cell.max() + 1)
                                                  + 0.5) * cells.bin_width_deg
    return PowderLevel(cells, modulation, ring_tth, ring_level.reshape(frame32.shape), keep)


def spot_table(frame32: np.ndarray, spots: np.ndarray, static: np.ndarray, geometry: Geometry,
               *, frame_index: int = 0, probability: np.ndarray | None = None,
               level: PowderLevel | None = None) -> pd.DataFrame:
    """One row per masked spot of a frame (`COLUMNS`, see the module docstring).

    Parameters
    ----------
    frame32
        float32 counts ``(rows, cols)`` as the masker saw it (`preprocess.prepare_frame`).
    spots, static
        bool masks of the same shape (the masker's `MaskResult`).
    geometry
        The frame's geometry.
    frame_index
        The ``frame`` column.
    probability
        The network's spot probability, or None.
    level
        The powder level (`powder_level`) if already computed.
    """
    found = spots & ~static
    labels, n = component_labels(found)
    if n == 0:
        return empty_spot_table()
    if level is None:
        level = powder_level(frame32, spots, static, geometry)
    on = np.flatnonzero(found)
    lab = labels.ravel()[on] - 1
    rows, cols = np.divmod(on, spots.shape[1])
    powder = _around_each_spot(labels, on, lab, frame32, level, geometry)
    net = frame32.ravel()[on].astype(np.float64) - powder
    w = np.clip(net, 0.0, None)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=values, minlength=n)

    area = np.bincount(lab, minlength=n).astype(np.float64)
    wsum = total(w)
    weighted = wsum > 0
    # centroid weighted by net intensity; the geometric centre where nothing is above level
    wr = np.where(weighted, total(w * rows) / np.where(weighted, wsum, 1), total(rows) / area)
    wc = np.where(weighted, total(w * cols) / np.where(weighted, wsum, 1), total(cols) / area)
    weights = np.where(weighted[lab], w, 1.0)
    norm = total(weights)
    dr, dc = rows - wr[lab], cols - wc[lab]
    mrr = total(weights * dr * dr) / norm
    mcc = total(weights * dc * dc) / norm
    mrc = total(weights * dr * dc) / norm
    half_trace, det_part = (mrr + mcc) / 2, np.sqrt(((mrr - mcc) / 2) ** 2 + mrc**2)
    l1, l2 = half_trace + det_part, np.maximum(half_trace - det_part, 0.0)
    elongation = np.sqrt((l1 + 1 / 12) / (l2 + 1 / 12))  # a single pixel's own extent
    axis = 0.5 * np.arctan2(2 * mrc, mrr - mcc)  # long axis: angle from the row axis
    # per-spot maximum over the spots' pixels alone (ndimage.maximum sorts the whole frame)
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, lab, net)
    ri = np.clip(np.rint(wr).astype(int), 0, spots.shape[0] - 1)
    ci = np.clip(np.rint(wc).astype(int), 0, spots.shape[1] - 1)
    tth = geometry.tth_deg()[ri, ci].astype(np.float64)
    chi = geometry.chi_deg()[ri, ci].astype(np.float64)
    try:
        q = 4 * math.pi * np.sin(np.radians(tth) / 2) / (geometry.wavelength_m * 1e10)
    except GeometryError:  # a PONI without a wavelength: no q
        q = np.full(n, np.nan)
    orientation = _to_radial(axis, ri, ci, geometry)
    orientation = np.where(elongation < 1.05, np.nan, orientation)
    mean_p = (np.asarray(ndimage.mean(probability, labels, np.arange(1, n + 1)), np.float64)
              if probability is not None else np.full(n, np.nan))
    return pd.DataFrame({
        "frame": np.full(n, int(frame_index), np.int64),
        "row_px": wr, "col_px": wc, "two_theta_deg": tth, "chi_deg": chi,
        "q_inv_angstrom": q, "area_px": area.astype(np.int64),
        "peak_net_counts": np.asarray(peak, np.float64),
        "integrated_net_counts": total(net), "elongation": elongation,
        "orientation_deg": orientation, "mean_probability": mean_p,
    }, columns=list(COLUMNS))


#: Half-width of the window around a spot that its powder level is read from, px.
WINDOW_PX = 6


def _around_each_spot(labels: np.ndarray, on: np.ndarray, lab: np.ndarray,
                      frame32: np.ndarray, level: PowderLevel, geometry: Geometry
                      ) -> np.ndarray:
    """The powder level under each spot pixel (flat indices ``on``, component ``lab``, from
    0) from the spot's own surroundings: its pixels' ring levels times the median χ
    modulation (pixel / its ring's level) of the powder pixels within `WINDOW_PX` of the spot
    whose 2θ lies within the spot's 2θ range. The cells' modulation averages a
    preferred-orientation band narrower than a cell with its flanks; this follows the band
    under the spot. Where a spot has too few such pixels: `PowderLevel.at`."""
    out = level.at(on).astype(np.float64)
    ring_at = level.ring_level.ravel()[on]
    by_spot = np.argsort(lab, kind="stable")
    starts = np.searchsorted(lab[by_spot], np.arange(int(lab.max()) + 2))
    tth = geometry.tth_deg()
    rows, cols = labels.shape
    margin = 0.5 * geometry.tth_per_pixel_deg()
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        r0, r1 = max(box[0].start - WINDOW_PX, 0), min(box[0].stop + WINDOW_PX, rows)
        c0, c1 = max(box[1].start - WINDOW_PX, 0), min(box[1].stop + WINDOW_PX, cols)
        win = (slice(r0, r1), slice(c0, c1))
        comp = labels[win] == k
        t = tth[win]
        lo, hi = float(t[comp].min()) - margin, float(t[comp].max()) + margin
        ring = level.ring_level[win]
        use = level.powder[win] & (t >= lo) & (t <= hi) & (ring > 0)
        if use.sum() < 8:
            continue
        modulation = float(np.median(frame32[win][use] / ring[use]))
        mine = by_spot[starts[k - 1]:starts[k]]
        out[mine] = ring_at[mine] * np.float32(modulation)
    return out


def empty_spot_table() -> pd.DataFrame:
    """A spot table with no rows (the columns and dtypes of `spot_table`)."""
    dtypes = {c: (np.int64 if c in ("frame", "area_px") else np.float64) for c in COLUMNS}
    return pd.DataFrame({c: np.zeros(0, t) for c, t in dtypes.items()}, columns=list(COLUMNS))


def _to_radial(axis_rad: np.ndarray, ri: np.ndarray, ci: np.ndarray,
               geometry: Geometry) -> np.ndarray:
    """Angle (0-90°) between a long axis (radians from the row axis) and the radial direction
    at pixels ``(ri, ci)``, the radial direction taken from the 2θ gradient."""
    tth = geometry.tth_deg()
    rows, cols = tth.shape
    g_r = (tth[np.minimum(ri + 1, rows - 1), ci].astype(np.float64)
           - tth[np.maximum(ri - 1, 0), ci])
    g_c = (tth[ri, np.minimum(ci + 1, cols - 1)].astype(np.float64)
           - tth[ri, np.maximum(ci - 1, 0)])
    radial = np.arctan2(g_c, g_r)
    d = np.abs((axis_rad - radial + np.pi / 2) % np.pi - np.pi / 2)
    return np.degrees(d)
