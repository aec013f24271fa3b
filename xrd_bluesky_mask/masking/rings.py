"""Per-ring robust statistics: median and MAD of the pixels in each 2θ bin.

The classical masker thresholds on them, and the U-Net gets each pixel's excess over its own
ring as an input channel. Bins are about ``bin_px`` pixels of radius wide (2θ step of one
pixel at the beam centre times ``bin_px``). The pixel-to-bin sort is done once per geometry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from ..geometry import Geometry

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class RingBins:
    """Pixels grouped by 2θ bin, computed once per geometry.

    Attributes
    ----------
    index
        int32 ``(rows*cols,)``: bin of every pixel (row-major).
    order
        int64: pixel indices sorted by bin (all pixels, or a strided sample per bin).
    offsets
        int64 ``(n_bins + 1,)``: bin ``b`` owns ``order[offsets[b]:offsets[b+1]]``.
    bin_width_deg
        Width of one bin in 2θ, degrees.
    """

    index: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    bin_width_deg: float

    @property
    def n_bins(self) -> int:
        """Number of 2θ bins."""
        return len(self.offsets) - 1

    @functools.cached_property
    def index_tensor(self):
        """`index` as an int64 torch tensor, for torch gathers (made once per geometry)."""
        import torch

        return torch.from_numpy(self.index.astype(np.int64, copy=False))


def ring_bins(geometry: Geometry, bin_px: float = 2.0, max_per_bin: int | None = None) -> RingBins:
    """Bin the detector's pixels by 2θ (cached on the geometry).

    Parameters
    ----------
    geometry
        Detector geometry.
    bin_px
        Bin width in pixels of radius at the beam centre (GSAS-II uses about 2).
    max_per_bin
        Keep at most this many pixels per bin (an evenly strided sample) for fast, approximate
        statistics; None keeps all pixels (exact statistics).
    """
    key = ("ring_bins", float(bin_px), max_per_bin)
    if key in geometry._cache:
        return geometry._cache[key]
    if max_per_bin is None:
        width = geometry.tth_per_pixel_deg() * bin_px
        tth = geometry.tth_deg().ravel()
        index = np.floor((tth - tth.min()) / width).astype(np.int32)
        order = np.argsort(index, kind="stable")
        counts = np.bincount(index)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        result = RingBins(index, order, offsets, width)
    else:
        full = ring_bins(geometry, bin_px, None)
        order, offsets = _subsample(full.order, full.offsets, max_per_bin)
        result = RingBins(full.index, order, offsets, full.bin_width_deg)
    geometry._cache[key] = result
    return result


@dataclass(frozen=True)
class SectorBins(RingBins):
    """Pixels grouped by (2θ ring, χ sector); sectors are about ``arc_px`` long on every ring.

    Attributes
    ----------
    ring_of_cell
        int64 ``(n_cells,)``: the ring of every cell.
    opposite
        int64 ``(n_cells,)``: the cell at χ + 180° on the same ring.
    """

    ring_of_cell: np.ndarray = None  # type: ignore[assignment]
    opposite: np.ndarray = None  # type: ignore[assignment]

    @functools.cached_property
    def opposite_index_tensor(self):
        """For every pixel, the cell at χ + 180° on its ring (int64 torch, made once)."""
        import torch

        return torch.from_numpy(self.opposite[self.index])


def sector_bins(
    geometry: Geometry, bin_px: float = 2.0, arc_px: float = 64.0, max_per_bin: int = 32
) -> SectorBins:
    """Cells of (ring, χ sector) with sectors ``arc_px`` px long (2-120 sectors, even, per ring).

    Rings are those of `ring_bins` with the same ``bin_px``. A fixed arc length (rather than a
    fixed angle) keeps a 15 px spot to a small part of its cell at every radius, so the cell
    median ignores spots but follows preferred orientation and arcs. Each cell keeps at most
    ``max_per_bin`` pixels (statistics are estimates). Cached on the geometry.
    """
    key = ("sector_bins", float(bin_px), float(arc_px), max_per_bin)
    if key in geometry._cache:
        return geometry._cache[key]
    rings = ring_bins(geometry, bin_px)
    n_rings = rings.n_bins
    tth = geometry.tth_deg().ravel()
    ring_tth = np.radians(tth.min() + (np.arange(n_rings) + 0.5) * rings.bin_width_deg)
    radius_px = geometry.distance_m * np.tan(ring_tth) / min(geometry.pixel_size_m)
    n_sec = np.clip(2 * np.round(np.pi * radius_px / arc_px), 2, 120).astype(np.int64)
    first = np.concatenate([[0], np.cumsum(n_sec)])
    ring = rings.index.astype(np.int64)
    frac = (geometry.chi_deg().ravel() + 180.0) / 360.0
    sector = np.minimum((frac * n_sec[ring]).astype(np.int64), n_sec[ring] - 1)
    index = first[ring] + sector
    n_cells = int(first[-1])
    ring_of_cell = np.repeat(np.arange(n_rings), n_sec)
    local = np.arange(n_cells) - first[ring_of_cell]
    opposite = first[ring_of_cell] + (local + n_sec[ring_of_cell] // 2) % n_sec[ring_of_cell]
    order = np.argsort(index, kind="stable")
    counts = np.bincount(index, minlength=n_cells)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    order, offsets = _subsample(order, offsets, max_per_bin)
    result = SectorBins(index, order, offsets, rings.bin_width_deg, ring_of_cell, opposite)
    geometry._cache[key] = result
    return result


def cell_medians(frame: np.ndarray, valid: np.ndarray, bins: RingBins) -> np.ndarray:
    """Median of the valid pixels of every bin of ``bins`` (NaN for empty bins), float32."""
    values = frame.ravel()[bins.order].astype(np.float32, copy=False)
    ok = valid.ravel()[bins.order]
    med, _, _ = _median_mad(values, ok, bins.offsets)
    return med


def _subsample(order: np.ndarray, offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``k`` evenly strided pixels of every bin (vectorised over bins)."""
    counts = np.diff(offsets)
    keep = np.minimum(counts, k)
    new_offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    owner = np.repeat(np.arange(len(counts)), keep)
    j = np.arange(new_offsets[-1]) - new_offsets[:-1][owner]
    pos = offsets[:-1][owner] + (j * counts[owner]) // keep[owner]
    return order[pos], new_offsets


@numba.njit(cache=True, nogil=True)
def _median_mad(values: np.ndarray, valid: np.ndarray, offsets: np.ndarray):
    n_bins = len(offsets) - 1
    med = np.full(n_bins, np.nan, dtype=np.float32)
    mad = np.full(n_bins, np.nan, dtype=np.float32)
    count = np.zeros(n_bins, dtype=np.int64)
    buf = np.empty(values.shape[0], dtype=np.float32)
    for b in range(n_bins):
        n = 0
        for i in range(offsets[b], offsets[b + 1]):
            if valid[i]:
                buf[n] = values[i]
                n += 1
        count[b] = n
        if n == 0:
            continue
        m = np.median(buf[:n])
        med[b] = m
        for i in range(n):
            buf[i] = abs(buf[i] - m)
        mad[b] = np.median(buf[:n])
    return med, mad, count


@dataclass(frozen=True)
class RingStats:
    """Robust level and spread of every 2θ bin (NaN for bins with no valid pixel)."""

    median: np.ndarray
    sigma: np.ndarray
    count: np.ndarray
    bins: RingBins

    def excess(self, frame: np.ndarray) -> np.ndarray:
        """Each pixel's excess over its ring, in robust standard deviations (float32 image)."""
        idx = self.bins.index
        med = np.nan_to_num(self.median, nan=0.0)[idx]
        sig = np.nan_to_num(self.sigma, nan=1.0)[idx]
        z = (frame.ravel() - med) / sig
        return z.reshape(frame.shape).astype(np.float32, copy=False)


def ring_stats(
    frame: np.ndarray,
    valid: np.ndarray,
    geometry: Geometry,
    *,
    bin_px: float = 2.0,
    max_per_bin: int | None = None,
) -> RingStats:
    """Median and robust sigma (1.4826·MAD) of the valid pixels of each 2θ bin.

    Parameters
    ----------
    frame
        float32 ``(rows, cols)`` counts.
    valid
        bool ``(rows, cols)``: pixels that count (static-masked pixels are False).
    geometry
        Detector geometry (its bins are cached).
    bin_px
        Bin width, pixels of radius.
    max_per_bin
        Estimate from at most this many pixels per bin (fast) or from all (None, exact).

    Notes
    -----
    sigma has a floor so that bins of integer counts with MAD = 0 (dark, low-flux rings) do
    not turn one extra count into an infinite excess: 1 count for integer-valued frames, and
    1e-6 of the frame's median level otherwise.
    """
    bins = ring_bins(geometry, bin_px, max_per_bin)
    values = frame.ravel()[bins.order].astype(np.float32, copy=False)
    ok = valid.ravel()[bins.order]
    med, mad, count = _median_mad(values, ok, bins.offsets)
    sample = values[ok][:: max(1, ok.sum() // 4096)] if ok.any() else values[:1]
    integer_valued = bool(np.all(sample == np.round(sample)))
    floor = 1.0 if integer_valued else 1e-6 * max(float(np.nanmedian(np.abs(med))), 1e-12)
    sigma = np.maximum(MAD_TO_SIGMA * mad, floor).astype(np.float32)
    return RingStats(med, sigma, count, bins)
