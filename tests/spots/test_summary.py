"""The frame summary: spot count, masked share, texture index, similarity to the last frame."""

from __future__ import annotations

import numpy as np
import pytest

from xrd_bluesky_mask.azimuthal import integrate
from xrd_bluesky_mask.masking.preprocess import prepare_frame
from xrd_bluesky_mask.spots import (
    SUMMARY_COLUMNS,
    frame_summary,
    pattern_similarity,
    powder_level,
    ring_texture,
)

from ..masking.frames import ring_frame


def _texture(geometry, rng, po_strength):
    frame, _ = ring_frame(geometry, rng, level=20.0, ring_peak=3000.0, width_deg=0.3,
                          po_strength=po_strength, po_width_deg=15.0)
    f32, static = prepare_frame(frame, geometry)
    spots = np.zeros(f32.shape, bool)
    pattern = integrate(f32, geometry, mask=static)
    return ring_texture(pattern, powder_level(f32, spots, static, geometry), frame_index=3)


def test_texture_index_is_near_zero_for_an_even_ring_and_grows_with_orientation(
        small_geometry, rng):
    even, oriented = _texture(small_geometry, rng, 0.0), _texture(small_geometry, rng, 8.0)
    assert len(even) >= 1 and (even["frame"] == 3).all()
    assert even["two_theta_deg"].iloc[0] == pytest.approx(8.0, abs=0.15)
    assert float(even["texture_index"].iloc[0]) < 0.1
    assert float(oriented["texture_index"].iloc[0]) > 5 * float(even["texture_index"].iloc[0])
    assert float(oriented["texture_index"].iloc[0]) > 0.3


def test_similarity_falls_when_the_pattern_changes():
    x = np.linspace(0, 10, 200)
    a = np.exp(-0.5 * ((x - 3) / 0.1) ** 2) + 0.1
    shifted = np.exp(-0.5 * ((x - 3.5) / 0.1) ** 2) + 0.1
    assert pattern_similarity(a, a * 2) == pytest.approx(1.0)
    assert pattern_similarity(a, shifted) < 0.5
    gaps = a.copy()
    gaps[:50] = np.nan  # bins masked in one frame only are left out
    assert pattern_similarity(gaps, a) == pytest.approx(1.0)
    assert np.isnan(pattern_similarity(a, None)) and np.isnan(pattern_similarity(a, a[:10]))


def test_frame_summary_row():
    spots = np.zeros((10, 10), bool)
    static = np.zeros((10, 10), bool)
    spots[0, :5] = True
    static[9] = True
    import pandas as pd

    texture = pd.DataFrame({"frame": [0, 0], "two_theta_deg": [5.0, 7.0],
                            "ring_level_counts": [300.0, 100.0], "texture_index": [0.2, 0.6]})
    row = frame_summary(4, spots, static, 1, texture, 0.9)
    assert list(row) == list(SUMMARY_COLUMNS)
    assert row["masked_pct"] == pytest.approx(100 * 5 / 90)
    assert row["texture_index"] == pytest.approx((0.2 * 300 + 0.6 * 100) / 400)
    assert row["spot_count"] == 1 and row["similarity_to_previous"] == 0.9
