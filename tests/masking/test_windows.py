"""Ring windows around a pixel and the pixel at χ + 180° (masking/windows.py)."""

from __future__ import annotations

import numpy as np

from xrd_bluesky_mask.geometry import make_geometry
from xrd_bluesky_mask.masking.rings import ring_bins
from xrd_bluesky_mask.masking.windows import opposite_pixels, window_quantiles


def test_window_quantiles_are_those_of_the_ring_pixels_in_the_window(small_geometry, rng):
    frame = rng.gamma(2.0, 50.0, small_geometry.shape).astype(np.float32)
    valid = rng.random(small_geometry.shape) > 0.1
    flat = np.array([40 * 256 + 200, 128 * 256 + 30, -1])
    tth = small_geometry.tth_deg()
    dtth = 0.5 * small_geometry.tth_per_pixel_deg()
    got = {q: window_quantiles(frame, valid, small_geometry, flat, q=q, half_px=8)
           for q in (0.5, 0.9)}
    for k, p in enumerate(flat[:2]):
        r, c = divmod(int(p), 256)
        win = (slice(r - 8, r + 9), slice(c - 8, c + 9))
        pick = valid[win] & (np.abs(tth[win] - tth[r, c]) <= dtth)
        for q in (0.5, 0.9):
            assert np.isclose(got[q][k], np.quantile(frame[win][pick], q), rtol=1e-6)
    assert np.isnan(got[0.5][2])  # -1: no pixel, no window


def test_the_opposite_pixel_is_on_the_same_ring_at_chi_plus_180_or_none():
    geometry = make_geometry((256, 256), pixel_size_m=150e-6, distance_m=0.12,
                             center_px=(128.0, 40.0))  # rings leave the frame on one side
    bins = ring_bins(geometry, 2.0)
    tth, chi = geometry.tth_deg().ravel(), geometry.chi_deg().ravel()
    near = 128 * 256 + 60   # 20 px from the beam: its ring is whole on the detector
    far = 128 * 256 + 200   # 160 px: at χ + 180° the ring is off the detector
    twin = opposite_pixels(geometry, bins, np.array([near, far]))
    assert twin[1] == -1 and twin[0] >= 0
    assert abs(abs(((chi[twin[0]] - chi[near]) + 180.0) % 360.0 - 180.0) - 180.0) <= 5.0
    assert bins.index[twin[0]] == bins.index[near]
    assert abs(tth[twin[0]] - tth[near]) <= bins.bin_width_deg
