"""The spot table: positions, angles and net intensities of what the mask found."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrd_bluesky_mask.masking.preprocess import prepare_frame
from xrd_bluesky_mask.spots import COLUMNS, powder_level, spot_table

from ..masking.frames import ring_frame


def _disc(shape, r, c, radius):
    rr, cc = np.indices(shape)
    return np.hypot(rr - r, cc - c) <= radius


def test_isolated_spots_on_a_ring_and_on_a_band_are_measured_above_their_powder(
        small_geometry, rng):
    """Gaussian spots (σ 1.5 px) between rings, on a ring and on a strong preferred-orientation
    band: centroid, 2θ/χ, q, area and net intensities above the local powder level."""
    tth, chi = small_geometry.tth_deg(), small_geometry.chi_deg()
    on_ring = np.argwhere((np.abs(tth - 8.0) < 0.02) & (np.abs(chi - 30.0) < 2))[0]
    between = (40, 200)
    spots_at = [(*between, 1.5, 3000.0), (*on_ring, 1.5, 60000.0)]
    frame, expected = ring_frame(small_geometry, rng, level=50.0, ring_peak=2000.0,
                                 width_deg=0.4, po_strength=5.0, po_chi=30.0,
                                 po_width_deg=20.0, spots=spots_at)
    f32, static = prepare_frame(frame, small_geometry)
    mask = np.zeros(f32.shape, bool)
    for r, c, s, _ in spots_at:
        mask |= _disc(f32.shape, r, c, 3.5 * s)
    table = spot_table(f32, mask, static, small_geometry, frame_index=7)
    assert list(table.columns) == list(COLUMNS) and len(table) == 2
    assert (table["frame"] == 7).all()
    for r, c, s, peak in spots_at:
        d = np.hypot(table["row_px"] - r, table["col_px"] - c)
        row = table.iloc[int(np.argmin(d))]
        assert float(d.min()) < 0.5
        assert row.two_theta_deg == pytest.approx(float(tth[int(r), int(c)]), abs=0.1)
        q = 4 * math.pi * math.sin(math.radians(row.two_theta_deg) / 2) / (
            small_geometry.wavelength_m * 1e10)
        assert row.q_inv_angstrom == pytest.approx(q)
        true = 2 * math.pi * s * s * peak * (1 - math.exp(-0.5 * 3.5**2))
        assert row.integrated_net_counts == pytest.approx(true, rel=0.1)
        assert row.peak_net_counts == pytest.approx(peak, rel=0.15)
        assert row.elongation < 1.3 and np.isnan(row.mean_probability)
        assert row.area_px == int(_disc(f32.shape, r, c, 3.5 * s).sum())


def test_a_streak_s_orientation_is_read_against_the_radius(small_geometry):
    """A streak along the ring reads about 90°, one along the radius about 0°."""
    rows, cols = small_geometry.shape
    rr, cc = np.indices((rows, cols))
    frame = np.full((rows, cols), 10.0, np.float32)
    tth = small_geometry.tth_deg()
    # the radial direction at the pixel, from the 2θ gradient
    r0, c0 = 60, 200
    g = np.array([tth[r0 + 1, c0] - tth[r0 - 1, c0], tth[r0, c0 + 1] - tth[r0, c0 - 1]])
    u = g / np.hypot(*g)
    out = {}
    for name, axis in (("radial", u), ("tangential", np.array([-u[1], u[0]]))):
        along = (rr - r0) * axis[0] + (cc - c0) * axis[1]
        across = -(rr - r0) * axis[1] + (cc - c0) * axis[0]
        streak = 500 * np.exp(-0.5 * ((along / 6.0) ** 2 + (across / 1.0) ** 2))
        f32, static = prepare_frame(frame + streak.astype(np.float32), small_geometry)
        t = spot_table(f32, streak > 5, static, small_geometry)
        assert len(t) == 1 and t["elongation"].iloc[0] > 3
        out[name] = float(t["orientation_deg"].iloc[0])
    assert out["radial"] < 10 and out["tangential"] > 80


def test_no_spots_give_an_empty_table_with_the_columns(small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng)
    f32, static = prepare_frame(frame, small_geometry)
    t = spot_table(f32, np.zeros(f32.shape, bool), static, small_geometry)
    assert len(t) == 0 and list(t.columns) == list(COLUMNS)


def test_spot_table_against_the_simulator_s_ground_truth():
    """On a simulated frame masked with its true labels: most rows sit within 2 px of a true
    spot centre (touching spots share a row), and isolated spots' integrated net intensity is
    within 10 % of their true excess (median)."""
    from xrd_bluesky_mask.apps.spot_accuracy import spot_table_accuracy
    from xrd_bluesky_mask.simulate import preset, simulate_frame

    sim = simulate_frame(preset("rings_spots", shape=(768, 768)), seed=1_002_000)
    _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    m = spot_table_accuracy(sim, sim.labels & ~static, static)
    assert m["rows"] > 30 and m["matched"] >= 0.85
    assert m["isolated"] > 20 and m["err_median"] < 0.05 and m["err_p90"] < 0.25


def test_powder_level_follows_a_band_and_ignores_the_spot(small_geometry, rng):
    spots_at = [(60, 60, 2.0, 5000.0)]
    frame, expected = ring_frame(small_geometry, rng, level=100.0, spots=spots_at)
    f32, static = prepare_frame(frame, small_geometry)
    mask = _disc(f32.shape, 60, 60, 7)
    level = powder_level(f32, mask, static, small_geometry).image
    assert level[60, 60] == pytest.approx(100.0, rel=0.1)  # the spot is not the powder
