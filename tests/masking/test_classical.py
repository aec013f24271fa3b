"""The classical per-ring outlier filter: finds bright spots, and wrongly masks PO bands."""

from __future__ import annotations

import numpy as np
import pytest

from xrd_bluesky_mask.masking import Masker, get_masker
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.masking.rings import ring_stats

from .frames import ring_frame


def test_is_a_masker():
    assert isinstance(RingOutlierMasker(), Masker)
    assert isinstance(get_masker("classical"), RingOutlierMasker)


def test_ring_stats_recover_level_and_spread(small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng, level=400.0, ring_peak=0.0)
    stats = ring_stats(frame, np.ones(frame.shape, bool), small_geometry)
    ok = stats.count > 50
    assert np.allclose(stats.median[ok], 400, rtol=0.03)
    assert np.allclose(np.median(stats.sigma[ok]), 20, rtol=0.15)  # sqrt(400)


def test_catches_bright_spots(small_geometry, rng):
    spots = [(60, 70, 1.5, 3000.0), (200, 180, 2.5, 1500.0), (128, 40, 1.0, 800.0)]
    frame, _ = ring_frame(small_geometry, rng, spots=spots)
    result = RingOutlierMasker(n_sigma=3).predict(frame, small_geometry)
    for r, c, _, _ in spots:
        assert result.spots[r, c], f"spot at {(r, c)} not masked"
    # on a clean frame the false-positive rate is that of a 3-sigma one-sided cut
    clean, _ = ring_frame(small_geometry, rng)
    fp = RingOutlierMasker(n_sigma=3).predict(clean, small_geometry).spot_fraction
    assert fp < 0.01


def test_masks_preferred_orientation_bands(small_geometry, rng):
    """The known weakness: a strong PO band lifts an arc of the ring over the ring median."""
    frame, _ = ring_frame(small_geometry, rng, po_strength=20.0, ring_peak=1000.0)
    result = RingOutlierMasker().predict(frame, small_geometry)
    tth, chi = small_geometry.tth_deg(), small_geometry.chi_deg()
    d = np.abs(((chi - 30.0) + 90.0) % 180.0 - 90.0)
    band = (np.abs(tth - 8.0) < 0.05) & (d < 4.0)
    assert band.sum() > 20
    assert result.spots[band].mean() > 0.5, "PO band pixels should (wrongly) be masked"


def test_static_pixels_are_reported_apart(small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng, spots=[(50, 50, 2.0, 5000.0)])
    frame[:, 100:104] = -1  # a module gap
    frame[10, 10] = np.nan
    with pytest.warns(UserWarning, match="NaN or infinite"):
        result = RingOutlierMasker().predict(frame, small_geometry)
    assert result.static[:, 100:104].all() and result.static[10, 10]
    assert not (result.spots & result.static).any()
    assert result.mask[:, 100:104].all() and result.mask[50, 50]


def test_both_sides_masks_dark_pixels(small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng, level=1000.0, ring_peak=0.0)
    frame[30, 30] = 1.0
    assert not RingOutlierMasker(side="upper").predict(frame, small_geometry).spots[30, 30]
    assert RingOutlierMasker(side="both").predict(frame, small_geometry).spots[30, 30]


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="n_sigma"):
        RingOutlierMasker(n_sigma=0)
    with pytest.raises(ValueError, match="side"):
        RingOutlierMasker(side="lower")
