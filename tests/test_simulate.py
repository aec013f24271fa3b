"""Tests of the synthetic frame simulator (real pyFAI geometry, small frames)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from xrd_bluesky_mask.simulate import (
    PRESETS,
    SceneConfig,
    SpotSpec,
    get_phase,
    preset,
    random_scene,
    simulate_frame,
)

SMALL = (256, 256)


def _quiet_calibrant(name: str):
    from pyFAI.calibrant import get_calibrant

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_calibrant(name)


def _flat_scene(**kw) -> SceneConfig:
    """64x64 px, no rings, flat background of 100 counts, gain 1, no read noise."""
    base = {
        "shape": (64, 64),
        "phases": (),
        "flux": 100.0,
        "background": {"constant": 1.0, "radial": 0.0, "air": 0.0},
        "noise": {"enabled": False, "gain": 1.0, "read_noise": 0.0},
    }
    base.update(kw)
    return SceneConfig.model_validate(base)


def _azimuthal_profile(frame, ring, nbins: int = 72, band: float = 0.3):
    """Mean spot-free counts on ``ring`` in χ bins, and the bin centres (degrees)."""
    tth, chi = frame.geometry.tth_deg(), frame.geometry.chi_deg()
    sel = np.abs(tth - ring.tth_deg) < band * ring.fwhm_deg
    idx = ((chi[sel] + 180.0) / (360.0 / nbins)).astype(int) % nbins
    s = np.bincount(idx, weights=frame.spot_free[sel], minlength=nbins)
    n = np.bincount(idx, minlength=nbins)
    assert n.min() > 0, "ring not fully on the detector"
    return s / n, (np.arange(nbins) + 0.5) * 360.0 / nbins - 180.0


# --- phases ------------------------------------------------------------------------------------


def test_computed_cells_follow_extinction_rules():
    ni = get_phase("Ni", 0.9)
    d = ni.d_spacings_angstrom()
    a = 3.524
    assert d[0] == pytest.approx(a / math.sqrt(3))  # 111 first: 100 and 110 are absent (fcc)
    assert d[1] == pytest.approx(a / 2.0)  # 200
    assert not np.any(np.isclose(d, a / math.sqrt(2)))  # 110 forbidden
    assert ni.reflections[0].multiplicity == 8
    assert ni.intensities().max() == pytest.approx(1.0)

    fe = get_phase("Fe", 1.0)  # bcc: 110 first
    assert fe.d_spacings_angstrom()[0] == pytest.approx(2.8665 / math.sqrt(2))

    nmc = get_phase("NMC", 1.5)  # R-3m obverse: 003 is the first line, 001/002 absent
    assert nmc.reflections[0].hkl == (0, 0, 3)
    assert nmc.d_spacings_angstrom()[0] == pytest.approx(14.25 / 3)
    hkls = {r.hkl for r in nmc.reflections}
    assert (1, 0, 1) in hkls or (0, -1, 1) in hkls or (-1, 1, 1) in hkls

    gr = get_phase("graphite", 1.0)
    gd = gr.d_spacings_angstrom()
    assert gd[0] == pytest.approx(6.711 / 2)  # 002; 001 absent
    assert np.any(np.isclose(gd, 2.464 * math.sqrt(3) / 2))  # 100
    c111 = 1.0 / math.sqrt(4 / 3 * 3 / 2.464**2 + 1 / 6.711**2)
    assert not np.any(np.isclose(gd, c111))  # h-k=3n with l odd is absent


def test_calibrant_phases_use_pyfai_dspacings():
    for name, cal_name in (("CeO2", "CeO2"), ("LaB6", "LaB6"), ("Si", "Si"),
                           ("Al2O3", "alpha_Al2O3")):
        cal = np.asarray(_quiet_calibrant(cal_name).dspacing, dtype=float)
        ours = get_phase(name, 1.0).d_spacings_angstrom()
        assert ours.size > 3
        # every line we keep is one of pyFAI's lines
        assert np.all(np.min(np.abs(ours[:, None] - cal[None, :]), axis=1) < 1e-6)
    with pytest.raises(ValueError, match="unknown phase"):
        get_phase("unobtainium")


# --- rendering ---------------------------------------------------------------------------------


def test_reproducible_with_seed_and_different_with_another():
    a = simulate_frame("rings_spots", seed=3, shape=SMALL)
    b = simulate_frame("rings_spots", seed=3, shape=SMALL)
    c = simulate_frame("rings_spots", seed=4, shape=SMALL)
    for name in ("image", "spot_free", "labels", "spot_ids", "static_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.spots == b.spots
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.labels, c.labels)


def test_dtypes_and_shapes():
    f = simulate_frame(preset("rings_spots", shape=(200, 240)), seed=1)
    assert f.image.shape == f.spot_free.shape == f.labels.shape == (200, 240)
    assert f.spot_ids.shape == f.static_mask.shape == (200, 240)
    assert f.image.dtype == np.float32 and f.spot_free.dtype == np.float32
    assert f.labels.dtype == bool and f.static_mask.dtype == bool
    assert f.spot_ids.dtype == np.int32
    assert f.geometry.shape == (200, 240)
    assert f.seed == 1 and f.config.name == "rings_spots"


def test_presets_produce_what_they_say():
    perfect = simulate_frame("perfect", seed=0, shape=SMALL)
    assert perfect.spots == [] and not perfect.labels.any() and not perfect.spot_ids.any()

    rs = simulate_frame("rings_spots", seed=0, shape=SMALL)
    assert rs.labels.any() and rs.n_detectable_spots > 0
    np.testing.assert_array_equal(rs.labels, rs.spot_ids > 0)
    assert rs.spot_ids.max() <= len(rs.spots)
    assert not (rs.labels & rs.static_mask).any()
    for s in rs.spots:
        assert (rs.spot_ids == s.spot_id).sum() == s.labelled_px


def test_spots_po_bands_are_centrosymmetric():
    f = simulate_frame(preset("spots_po", shape=(384, 384), spots={"count": 0}), seed=2)
    ring = max(f.rings, key=lambda r: r.peak_counts)
    prof, chi = _azimuthal_profile(f, ring)
    assert prof.max() / prof.min() > 4.0  # a strong band, not a flat ring
    i = int(np.argmax(prof))
    sep = np.abs(((chi - chi[i]) + 180.0) % 360.0 - 180.0)
    j = int(np.argmax(np.where(sep > 60.0, prof, -np.inf)))  # the other maximum
    assert abs(sep[j] - 180.0) <= 10.0
    assert prof[j] > 0.8 * prof[i]
    # the whole azimuthal profile repeats after 180°
    assert np.corrcoef(prof, np.roll(prof, len(prof) // 2))[0, 1] > 0.95


def _chi_dependence(frame, ring) -> float:
    """Relative std of spot-free counts among pixels of (nearly) equal 2θ on ``ring``."""
    tth = frame.geometry.tth_deg()
    sel = np.abs(tth - ring.tth_deg) < ring.fwhm_deg
    t, v = tth[sel], frame.spot_free[sel].astype(float)
    b = np.round((t - t.min()) / 0.001).astype(int)
    mean = np.bincount(b, v) / np.maximum(np.bincount(b), 1)
    return float(np.std(v / mean[b] - 1.0))


def test_texture_modulates_rings_and_perfect_rings_are_flat():
    tex = simulate_frame(preset("spots_texture", shape=(384, 384), spots={"count": 0}), seed=2)
    per = simulate_frame(preset("perfect", shape=(384, 384)), seed=2)
    assert _chi_dependence(tex, max(tex.rings, key=lambda r: r.peak_counts)) > 0.3
    assert _chi_dependence(per, max(per.rings, key=lambda r: r.peak_counts)) < 1e-3


def test_ring_peak_at_bragg_angle():
    cfg = preset("perfect", shape=(384, 384), phases=["CeO2"], noise={"enabled": False},
                 detector={"dead_fraction": 0.0, "hot_fraction": 0.0})
    f = simulate_frame(cfg, seed=0)
    lam = cfg.wavelength_angstrom
    d111 = float(_quiet_calibrant("CeO2").dspacing[0])
    expected = math.degrees(2.0 * math.asin(lam / (2.0 * d111)))
    tth = f.geometry.tth_deg()
    step = 0.005
    sel = np.abs(tth - expected) < 0.4
    bins = np.round((tth[sel] - expected) / step).astype(int)
    bins -= bins.min()
    prof = np.bincount(bins, weights=f.spot_free[sel]) / np.maximum(np.bincount(bins), 1)
    centres = np.arange(prof.size) * step + (np.round((tth[sel] - expected) / step).min() * step)
    peak = expected + centres[int(np.argmax(prof))]
    assert abs(peak - expected) < max(step, 0.25 * f.geometry.tth_per_pixel_deg())
    assert any(abs(r.tth_deg - expected) < 1e-6 for r in f.rings)


def test_flux_scales_span_orders_of_magnitude():
    lo = simulate_frame(preset("perfect", shape=SMALL, flux=10.0), seed=0)
    hi = simulate_frame(preset("perfect", shape=SMALL, flux=1e5), seed=0)
    assert hi.spot_free.max() / lo.spot_free.max() == pytest.approx(1e4, rel=1e-3)
    valid = ~(lo.static_mask | hi.static_mask)
    assert np.median(hi.image[valid]) / max(np.median(lo.image[valid]), 1.0) > 1e3
    top = max(hi.rings, key=lambda r: r.peak_counts)
    assert top.peak_counts == pytest.approx(1e5)


# --- ground-truth labels on constructed cases -------------------------------------------------


def test_bright_spot_on_flat_background_labelled_with_margin():
    cfg = _flat_scene(spots={"fixed": [SpotSpec(row=32.0, col=32.0, size_px=3.0,
                                                peak_counts=2000.0)]})
    f = simulate_frame(cfg, seed=0)
    excess = f.image - f.spot_free  # noise disabled: the exact spot contribution
    assert f.spot_free.min() == pytest.approx(100.0) and f.spot_free.max() == pytest.approx(100.0)
    core = excess > 10.0  # sigma = sqrt(100) = 10: 3σ = 30, 10 % of 100 = 10 (and > 1σ)
    assert core.sum() > 9
    expected = ndimage.binary_dilation(core, np.ones((3, 3), bool))
    np.testing.assert_array_equal(f.labels, expected)
    assert (f.labels & ~core).sum() > 0  # the 1-px margin exists
    assert f.spots[0].labelled_px == int(expected.sum())
    np.testing.assert_array_equal(f.spot_ids, expected.astype(np.int32))
    # analytic extent: FWHM 3 px Gaussian at 2000 counts drops below 10 counts at r≈4.3 px
    rr, cc = np.nonzero(f.labels)
    r = np.hypot(rr - 32.0, cc - 32.0)
    assert r.max() <= 4.3 + math.sqrt(2) + 0.1
    yy, xx = np.mgrid[:64, :64]
    assert f.labels[np.hypot(yy - 32.0, xx - 32.0) <= 3.5].all()


def test_spot_far_below_noise_is_not_labelled():
    cfg = _flat_scene(noise={"enabled": True, "gain": 1.0, "read_noise": 3.0},
                      spots={"fixed": [SpotSpec(row=30.0, col=30.0, size_px=4.0,
                                                peak_counts=0.5)]})
    f = simulate_frame(cfg, seed=0)
    assert not f.labels.any()
    assert f.spots[0].labelled_px == 0 and f.n_detectable_spots == 0


def test_spot_on_static_mask_is_not_labelled():
    bs = {"enabled": True, "radius_px": 10.0, "arm_width_px": 0.0}
    inside = _flat_scene(detector={"beamstop": bs},
                         spots={"fixed": [SpotSpec(row=31.5, col=31.5, size_px=2.0,
                                                   peak_counts=5000.0)]})
    f = simulate_frame(inside, seed=0)
    assert f.static_mask[31, 31] and not f.labels.any()
    # a spot straddling the beamstop edge is labelled only outside the mask
    edge = inside.updated(spots={"fixed": [SpotSpec(row=31.5, col=42.0, size_px=4.0,
                                                    peak_counts=5000.0)]})
    g = simulate_frame(edge, seed=0)
    assert g.labels.any()
    assert not (g.labels & g.static_mask).any()
    assert (g.spot_ids[g.static_mask] == 0).all()


def test_static_mask_covers_gaps_beamstop_dead_and_hot_pixels():
    cfg = _flat_scene(
        shape=(128, 128),
        noise={"enabled": True, "gain": 1.0, "read_noise": 1.0},
        detector={"module_px": (40, 50), "gap_px": (3, 2), "gap_value": -1.0,
                  "dead_fraction": 0.002, "dead_value": 0.0, "hot_fraction": 0.002,
                  "saturation": 60000.0,
                  "beamstop": {"enabled": True, "radius_px": 8.0, "arm_width_px": 4.0,
                               "arm_angle_deg": 90.0, "transmission": 0.0}},
        spots={"count": 20, "size_px": (2.0, 6.0)},
    )
    f = simulate_frame(cfg, seed=5)
    m = f.static_mask
    for r0 in (40, 83):
        assert m[r0:r0 + 3, :].all() and (f.image[r0:r0 + 3, :] == -1.0).all()
    for c0 in (50, 102):
        assert m[:, c0:c0 + 2].all() and (f.image[:, c0:c0 + 2] == -1.0).all()
    assert m[60:68, 64].all()  # beamstop disc around the centre
    assert m[120:128, 64].all()  # arm running down (+rows) to the edge
    assert not m[10, 10] and not m[70, 30]
    assert (f.image[60:68, 64] <= 5.0).all()  # shadowed: read noise only
    hot = m & (f.image == 60000.0)
    assert hot.sum() >= 10  # hot pixels: saturated and masked
    assert not (f.labels & m).any()
    assert np.all(f.image <= 60000.0)


def test_unknown_preset_raises_value_error():
    with pytest.raises(ValueError, match="rings_spots"):
        preset("no_such_scene")
    with pytest.raises(ValueError, match="spots_po"):
        simulate_frame("no_such_scene")
    assert set(PRESETS) == {"rings_spots", "spots_po", "spots_texture", "perfect"}


def test_preset_overrides_validate():
    cfg = preset("spots_po", flux=123.0, po={"strength": 30.0})
    assert cfg.flux == 123.0 and cfg.po.strength == 30.0 and cfg.po.enabled
    with pytest.raises(ValueError):
        preset("spots_po", ring_fwhm_deg=-1.0)
    # JSON round trip (scene configs travel as metadata)
    rt = SceneConfig.model_validate_json(preset("rings_spots").model_dump_json())
    assert rt == preset("rings_spots")


# --- random scenes -----------------------------------------------------------------------------


def test_random_scenes_are_broad_and_deterministic():
    a = [random_scene(np.random.default_rng(11), shape=SMALL) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng, shape=SMALL) for _ in range(80)]
    flux = np.array([s.flux for s in scenes])
    assert flux.max() / flux.min() > 1e3
    pix = np.array([s.pixel_size_um for s in scenes])
    assert pix.min() >= 75.0 and pix.max() <= 200.0
    assert len({s.wavelength_angstrom for s in scenes}) == len(scenes)
    assert any(abs(s.beam_center_frac[0] - 0.5) > 0.2 for s in scenes)  # off-centre beams
    negatives = [s for s in scenes if s.spots.count == 0 and not s.spots.fixed]
    assert any(s.po.enabled and s.po.strength >= 2.0 for s in negatives)
    assert any(s.texture.enabled and s.texture.amplitude >= 0.3 for s in negatives)
    assert any(s.detector.module_px is not None for s in scenes)
    assert any(s.detector.beamstop.enabled for s in scenes)
    neg = random_scene(np.random.default_rng(1), shape=SMALL, preset="negative_po")
    assert neg.spots.count == 0 and neg.po.enabled
    with pytest.raises(ValueError, match="negative_texture"):
        random_scene(np.random.default_rng(1), preset="bogus")


def test_v4_scenes_hold_faint_spots_and_spot_free_hard_negatives():
    """The v4 styles are what they say: faint spots 0.3-2x the local powder level on rings;
    spot-free sharp, oriented and grainy rings at low or high counts; integer counts on a
    share of frames (whole numbers in the image)."""
    from xrd_bluesky_mask.simulate.random_scenes import V4_STYLES

    rng = np.random.default_rng(5)
    scenes = {s: [random_scene(rng, shape=SMALL, preset=s) for _ in range(12)]
              for s in V4_STYLES}
    for s in scenes["faint_spots"] + scenes["faint_on_texture"]:
        assert s.spots.count > 0 and s.spots.rel_brightness[1] <= 2.0
        assert s.spots.on_ring_fraction >= 0.6 and s.spots.saturated_fraction == 0
    assert all(s.texture.enabled for s in scenes["faint_on_texture"])
    for s in scenes["negative_sharp"]:
        assert s.spots.count == 0 and s.ring_fwhm_deg <= 0.02 and s.pixel_floor >= 1.0
    assert any(s.po.enabled and s.po.strength >= 10 for s in scenes["negative_sharp"])
    assert any(not s.po.enabled for s in scenes["negative_sharp"])
    flux = [s.flux for s in scenes["negative_grainy"]]
    assert all(s.spots.count == 0 and s.texture.amplitude >= 0.6
               for s in scenes["negative_grainy"])
    assert min(flux) <= 300 and max(flux) >= 1e4 and not any(300 < f < 1e4 for f in flux)
    every = [s for group in scenes.values() for s in group]
    integer = [s for s in every if s.noise.integer]
    assert 0 < len(integer) < len(every)
    frame = simulate_frame(integer[0].with_shape((96, 128)), seed=2)
    assert np.array_equal(frame.image, np.round(frame.image))
    with pytest.raises(ValueError, match="unknown scene set"):
        random_scene(rng, shape=SMALL, scenes="v9")


def test_random_scenes_render():
    rng = np.random.default_rng(3)
    for style in ("spots_po", "negative_texture"):
        cfg = random_scene(rng, shape=(160, 192), preset=style)
        f = simulate_frame(cfg, seed=1)
        assert f.image.shape == (160, 192) and np.isfinite(f.image).all()
        assert not (f.labels & f.static_mask).any()
        if style.startswith("negative"):
            assert not f.labels.any()


def test_bright_heavy_tailed_spot_labels_are_round_and_bounded():
    """Tails end inside the render box: a saturating heavy-tailed spot gets a round label no
    wider than twice the maximum radius, never the box's square outline."""
    import numpy as np

    from xrd_bluesky_mask.simulate.spots import MAX_RADIUS_PX

    cfg = preset("rings_spots", shape=(512, 512), spots={
        "count": 1, "kinds": {"lorentzian": 1.0}, "size_px": (10.0, 12.0),
        "rel_brightness": (500.0, 1000.0), "saturated_fraction": 1.0, "on_ring_fraction": 0.0})
    sim = simulate_frame(cfg, seed=4)
    ys, xs = np.nonzero(sim.spot_ids == 1)
    assert ys.size > 50
    h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
    assert max(h, w) <= 2 * MAX_RADIUS_PX + 6
    # a square would fill its bounding box; a disc fills about pi/4 of it
    assert ys.size / (h * w) < 0.9


# --- v3 scenes: the cases the first models missed ----------------------------------------------


def test_v2_scenes_are_unchanged_by_the_v3_options():
    """The v2 scene set reproduces (recorded training commands stay valid): no v3 option is
    switched on, and a v2 frame does not depend on them."""
    for seed in range(12):
        cfg = random_scene(np.random.default_rng(seed), shape=SMALL)
        assert cfg.spots.streak_length_px is None and cfg.spots.extreme_fraction == 0
        assert cfg.spots.near_edge_fraction == 0 and cfg.detector.beamstop.rim == 0
        assert cfg.name in ("rings_spots", "spots_po", "spots_texture", "negative_po",
                            "negative_texture", "perfect")


def test_v3_scenes_switch_on_every_case():
    rng = np.random.default_rng(5)
    scenes = [random_scene(rng, shape=SMALL, scenes="v3") for _ in range(120)]
    names = {s.name for s in scenes}
    assert {"streaks", "heavy_tails", "edges", "extreme_pixels"} <= names
    with_spots = [s for s in scenes if s.spots.count > 0]
    assert all(s.spots.streak_length_px is not None for s in with_spots)
    assert max(s.spots.streak_length_px[1] for s in with_spots) > 200
    assert min(s.spots.moffat_beta[0] for s in with_spots) == 1.0
    assert any(s.spots.extreme_fraction > 0.2 for s in with_spots)
    assert any(s.detector.beamstop.rim > 0 for s in scenes)
    assert all(s.spots.count == 0 for s in scenes if s.name.startswith("negative"))
    with pytest.raises(ValueError, match="v3"):
        random_scene(np.random.default_rng(1), scenes="v9")


def _one_spot(kind: str, **spots) -> SceneConfig:
    return preset("rings_spots", shape=(512, 512), spots={
        "count": 1, "kinds": {kind: 1.0}, "saturated_fraction": 0.0, "on_ring_fraction": 0.0,
        **spots})


def test_long_streaks_are_labelled_along_their_length():
    cfg = _one_spot("streak", streak_length_px=(200.0, 220.0), rel_brightness=(50.0, 60.0),
                    streak_taper=0.5)
    sim = simulate_frame(cfg, seed=2)
    ys, xs = np.nonzero(sim.spot_ids == 1)
    assert ys.size > 0
    extent = math.hypot(np.ptp(ys), np.ptp(xs))
    # the labelled streak is about as long as drawn (minus what the frame edge cut off)
    s = sim.spots[0]
    inside = min(s.row, s.col, 511 - s.row, 511 - s.col)
    assert extent > min(150.0, inside + 100.0)


def test_streak_orientation_follows_the_rings():
    def angle_to_centre(orientation: str) -> float:
        cfg = _one_spot("streak", streak_length_px=(80.0, 90.0), rel_brightness=(50.0, 60.0),
                        streak_orientation=orientation)
        sim = simulate_frame(cfg, seed=7)
        ys, xs = np.nonzero(sim.spot_ids == 1)
        cov = np.cov(np.vstack([xs, ys]).astype(float))
        major = np.linalg.eigh(cov)[1][:, -1]
        cy, cx = cfg.center_px
        radial = np.array([xs.mean() - cx, ys.mean() - cy])
        cosang = abs(major @ radial) / np.linalg.norm(radial)
        return math.degrees(math.acos(min(cosang, 1.0)))

    assert angle_to_centre("radial") < 15.0
    assert angle_to_centre("tangential") > 75.0


def test_heavy_wings_reach_beyond_the_v2_render_box():
    from xrd_bluesky_mask.simulate.spots import MAX_RADIUS_PX

    cfg = _one_spot("lorentzian", size_px=(6.0, 6.0), moffat_beta=(1.0, 1.0), reach_px=150.0,
                    rel_brightness=(3000.0, 3000.0))
    sim = simulate_frame(cfg, seed=3)
    ys, xs = np.nonzero(sim.spot_ids == 1)
    assert max(np.ptp(ys), np.ptp(xs)) > 2 * MAX_RADIUS_PX + 6


def test_edge_spots_sit_near_edges_and_gaps():
    cfg = preset("rings_spots", shape=(512, 512), spots={
        "count": 60, "near_edge_fraction": 1.0, "near_edge_px": 6.0, "on_ring_fraction": 0.0},
        detector={"module_px": (200, 200), "gap_px": (8, 8)})
    sim = simulate_frame(cfg, seed=1)
    dist = ndimage.distance_transform_edt(np.pad(~sim.static_mask, 1))[1:-1, 1:-1]
    d = [dist[min(int(round(s.row)), 511), min(int(round(s.col)), 511)] for s in sim.spots]
    assert np.median(d) <= 8.0


def test_extreme_spots_are_tiny_bright_and_on_rings():
    cfg = preset("perfect", shape=(512, 512), ring_fwhm_deg=0.02, spots={
        "count": 20, "extreme_fraction": 1.0, "saturated_fraction": 0.0})
    sim = simulate_frame(cfg, seed=9)
    extreme = [s for s in sim.spots if s.kind == "extreme"]
    assert len(extreme) == 20 and all(s.on_ring for s in extreme)
    ratios = []
    for s in extreme:
        r, c = int(round(s.row)), int(round(s.col))
        ratios.append(s.peak_counts / sim.spot_free[r, c])
        assert 0 < s.labelled_px <= 40
    # sub-pixel spots sampled off their centre lose some peak, but stay far above the ring
    assert min(ratios) > 3 and np.median(ratios) > 20


def test_beamstop_rim_is_bright_but_never_a_spot():
    cfg = preset("perfect", shape=(512, 512), detector={"beamstop": {
        "enabled": True, "radius_px": 20.0, "arm_width_px": 6.0, "rim": 1.0,
        "rim_width_px": 3.0}})
    sim = simulate_frame(cfg, seed=0)
    plain = simulate_frame(cfg.updated(detector={"beamstop": {"rim": 0.0}}), seed=0)
    ring = ndimage.binary_dilation(sim.static_mask, iterations=2) & ~sim.static_mask
    assert (sim.spot_free[ring] > plain.spot_free[ring] + 0.3 * cfg.flux).mean() > 0.5
    assert not sim.labels.any()


def test_v3_training_frames_take_other_detector_shapes():
    from xrd_bluesky_mask.training.simulated import simulated_tiles

    tiles = simulated_tiles(2, shape=(320, 320), seed=4, window=256, negative_keep=1.0,
                            progress=False, scenes="v3")
    assert len(tiles) >= 1
    from xrd_bluesky_mask.training.simulated import _other_shape

    shapes = {_other_shape((1024, 1024), np.random.default_rng(i)) for i in range(20)}
    assert any(r != c for r, c in shapes)
    assert all(0.8e6 < r * c < 1.3e6 for r, c in shapes)
