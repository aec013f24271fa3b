"""Statistics of a pixel's own ring within a window around it, and the pixel at χ + 180°.

The decision step (`masking.decision`) judges a few candidate pixels at a time (the extreme
rule's, the brightest pixel of each component the network found) against the powder around
them: a quantile of the pixels of the same 2θ ring (within ``radial_px`` px of 2θ) inside a
square window centred on a pixel, and the same on the opposite side of the ring, at χ + 180°,
where a preferred-orientation band has its twin and a single-crystal spot has none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from ..geometry import Geometry
    from .rings import RingBins

__all__ = ["NEIGHBOURHOOD_HALF_PX", "NEIGHBOURHOOD_RADIAL_PX", "OPPOSITE_MAX_DCHI_DEG",
           "opposite_pixels", "window_quantiles"]

#: Half-width of the window, px, and the 2θ distance (px at the beam centre) within which its
#: pixels count as the centre pixel's own ring.
NEIGHBOURHOOD_HALF_PX = 32
NEIGHBOURHOOD_RADIAL_PX = 0.5
#: Largest χ distance, degrees, between χ + 180° and the pixel `opposite_pixels` returns.
OPPOSITE_MAX_DCHI_DEG = 5.0


@numba.njit(cache=True, nogil=True)
def _window_quantiles(frame, valid, tth, flat, half, dtth, q):  # pragma: no cover - numba
    rows, cols = frame.shape
    out = np.full(flat.shape[0], np.nan, dtype=np.float32)
    buf = np.empty((2 * half + 1) ** 2, dtype=np.float32)
    for k in range(flat.shape[0]):
        if flat[k] < 0:
            continue
        r0, c0 = flat[k] // cols, flat[k] % cols
        t0 = tth[r0, c0]
        n = 0
        for r in range(max(r0 - half, 0), min(r0 + half + 1, rows)):
            for c in range(max(c0 - half, 0), min(c0 + half + 1, cols)):
                if valid[r, c] and abs(tth[r, c] - t0) <= dtth:
                    buf[n] = frame[r, c]
                    n += 1
        if n > 0:
            out[k] = np.quantile(buf[:n], q)
    return out


def window_quantiles(frame: np.ndarray, valid: np.ndarray, geometry: Geometry, flat: np.ndarray,
                     *, q: float = 0.5, half_px: int = NEIGHBOURHOOD_HALF_PX,
                     radial_px: float = NEIGHBOURHOOD_RADIAL_PX) -> np.ndarray:
    """float32 quantile ``q`` of the valid pixels of each window centred on the pixels ``flat``
    (row-major indices; -1: none, NaN) whose 2θ is within ``radial_px`` px of the centre's:
    about 2 x ``half_px`` px of the centre's ring. NaN where a window holds no such pixel.
    Costs about 4,000 pixel visits per window: for a few candidates at a time."""
    flat = np.asarray(flat, dtype=np.int64)
    if flat.size == 0:
        return np.zeros(0, np.float32)
    return _window_quantiles(frame, valid, geometry.tth_deg(), flat, int(half_px),
                             np.float32(radial_px * geometry.tth_per_pixel_deg()), float(q))


def opposite_pixels(geometry: Geometry, bins: RingBins, flat: np.ndarray, *,
                    max_dchi_deg: float = OPPOSITE_MAX_DCHI_DEG) -> np.ndarray:
    """int64 for each pixel of ``flat``: the pixel of its 2θ bin (among the pixels ``bins``
    lists for it) nearest to χ + 180°, or -1 where none is within ``max_dchi_deg`` degrees
    (the ring leaves the detector there, or crosses a gap)."""
    chi = geometry.chi_deg().ravel()
    out = np.full(len(flat), -1, np.int64)
    for k, p in enumerate(np.asarray(flat, dtype=np.int64)):
        b = bins.index[p]
        members = bins.order[bins.offsets[b]:bins.offsets[b + 1]]
        if members.size == 0:
            continue
        d = np.abs((chi[members] - chi[p]) % 360.0 - 180.0)
        j = int(np.argmin(d))
        if d[j] <= max_dchi_deg:
            out[k] = members[j]
    return out
