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
from . import windows

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

    ring_of_cell: np.ndarray
    opposite: np.ndarray

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
    return binned_medians(frame.ravel()[bins.order], valid.ravel()[bins.order], bins)


def binned_medians(values: np.ndarray, valid: np.ndarray, bins: RingBins) -> np.ndarray:
    """`cell_medians` of values already taken at ``bins.order`` (``frame.ravel()[bins.order]``
    and the same of ``valid``): for a quantity computed at the binned pixels alone."""
    med, _, _ = _median_mad(np.asarray(values, np.float32), np.asarray(valid, bool),
                            bins.offsets)
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


#: Radial width of the (ring, χ-sector) cells, px: what the sector channels were trained on.
SECTOR_BIN_PX = 2.0
@dataclass(frozen=True)
class LocalStats:
    """The powder level of every pixel's neighbourhood on its ring.

    A pixel's local level is the largest of its (ring, χ-sector) cell median, the median of
    the cell at χ + 180° on the same ring, and its ring's median at the pixel's own 2θ.
    Preferred orientation and arcs are centro-symmetric and span a stretch of χ, so on a band
    both cells are bright and the band's crest is close to its level; a single-crystal spot
    is neither, so it stands far above the level of its cell. Against the whole ring's median
    alone a band's crest reads as hundreds of sigma above it (most of an oriented ring is the
    dim part between the bands). The ring's median stays a floor, so that a dark stretch of a
    grainy ring (both cells below the ring's median) does not make its grains look brighter
    than the ring rule would (measured: 1,465 against 5 false pixels on a grainy,
    integer-count frame without the floor): a rule judged on the local level fires on a
    subset of what it fires on the ring median at the same bins.

    The ring statistics may be finer (``ring``, bins of the model's ``ring_bin_px``) than the
    rings of the cells (``cell_ring``, `SECTOR_BIN_PX`): ring medians are cheap at any
    resolution and follow a sharp ring's profile, while cell medians cost in proportion to
    the number of cells.

    Attributes
    ----------
    ring
        Median and robust sigma of every 2θ ring at the finest resolution (the spread used
        for z, and the floor of the level).
    cell_ring
        The ring statistics at the cells' radial resolution (the same object as ``ring``
        when the bins agree).
    cells
        The (ring, χ-sector) cells (`sector_bins`).
    cell_median
        float32 ``(n_cells,)``: median of each cell's valid pixels, NaN where it has none.
    geometry
        The detector geometry (for `neighbourhood_level`).
    """

    ring: RingStats
    cell_ring: RingStats
    cells: SectorBins
    cell_median: np.ndarray
    geometry: Geometry

    @functools.cached_property
    def cell_level(self) -> np.ndarray:
        """float32 ``(n_cells,)``: the larger of each cell's median, its opposite cell's
        median and its ring's median (cell resolution), counts."""
        own, opposite = self.cell_median, self.cell_median[self.cells.opposite]
        ring = np.nan_to_num(self.cell_ring.median, nan=0.0)[self.cells.ring_of_cell]
        return np.fmax(np.fmax(own, opposite), ring).astype(np.float32)  # fmax skips NaN

    @property
    def same_bins(self) -> bool:
        """Whether the fine rings are the cells' rings (then ``level`` is ``cell_level``)."""
        return self.ring is self.cell_ring

    def level(self, shape: tuple[int, int]) -> np.ndarray:
        """The local level of every pixel, float32 image of ``shape``, counts."""
        level = self.cell_level[self.cells.index]
        if not self.same_bins:
            np.fmax(level, np.nan_to_num(self.ring.median, nan=0.0)[self.ring.bins.index],
                    out=level)
        return level.reshape(shape)

    def neighbourhood_level(self, frame: np.ndarray, valid: np.ndarray, flat: np.ndarray, *,
                            half_px: int = windows.NEIGHBOURHOOD_HALF_PX,
                            radial_px: float = windows.NEIGHBOURHOOD_RADIAL_PX,
                            base: np.ndarray | None = None) -> np.ndarray:
        """The local level of the pixels ``flat`` (row-major indices), refined: the larger of
        `level` and the median of the valid pixels on the pixel's own ring within a window
        centred on it.

        The cells are fixed in χ, so a preferred-orientation band narrower than a cell and
        near its edge leaves its crest far above the cell's median; the window centred on
        the pixel always holds the band's flanks, and a spot (at most about half the window's
        ring length) still stands above it. Pixels of the window count when their 2θ is
        within ``radial_px`` px of the pixel's (a sharp ring's flank is not its crest).
        Costs about 4,000 pixel visits per pixel asked: for the few candidates of a rule.

        Parameters
        ----------
        frame, valid
            float32 counts and bool valid pixels, ``(rows, cols)``.
        flat
            int64 row-major pixel indices.
        half_px, radial_px
            The window (`windows.window_quantiles`).
        base
            The level refined, at the pixels ``flat`` (default: `level` there).
        """
        base = self.level(frame.shape).ravel()[flat] if base is None else base
        if flat.size == 0:
            return base
        window = windows.window_quantiles(frame, valid, self.geometry, flat, half_px=half_px,
                                          radial_px=radial_px)
        return np.fmax(base, window)

    def excess(self, frame: np.ndarray) -> np.ndarray:
        """Each pixel's excess over its local level, in robust sigma of its ring (float32)."""
        sig = np.nan_to_num(self.ring.sigma, nan=1.0)[self.ring.bins.index]
        z = (frame.ravel() - self.level(frame.shape).ravel()) / sig
        return z.reshape(frame.shape).astype(np.float32, copy=False)


def local_stats(frame: np.ndarray, valid: np.ndarray, geometry: Geometry, ring: RingStats, *,
                arc_px: float = 64.0, cell_bin_px: float = SECTOR_BIN_PX) -> LocalStats:
    """`LocalStats` of ``frame``: ``ring`` (any bin width) and cells of ``cell_bin_px`` px of
    radius by about ``arc_px`` px of arc (the cells of the network's sector channels)."""
    ring_px = ring.bins.bin_width_deg / geometry.tth_per_pixel_deg()
    if abs(ring_px - cell_bin_px) < 1e-6:
        cell_ring = ring
    else:
        cell_ring = ring_stats(frame, valid, geometry, bin_px=cell_bin_px,
                               max_per_bin=256 if len(ring.bins.order) < frame.size else None)
    cells = sector_bins(geometry, cell_bin_px, arc_px)
    return LocalStats(ring, cell_ring, cells, cell_medians(frame, valid, cells), geometry)


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
    level = np.abs(med[np.isfinite(med)])  # no finite bin: a frame that is all masked
    floor = 1.0 if integer_valued else 1e-6 * max(float(np.median(level)) if level.size else 0.0,
                                                  1e-12)
    sigma = np.maximum(MAD_TO_SIGMA * mad, floor).astype(np.float32)
    return RingStats(med, sigma, count, bins)
