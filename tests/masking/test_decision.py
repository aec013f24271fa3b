"""The decision step: hysteresis growth from detected spots, and the extreme-pixel rule."""

import numpy as np

from xrd_bluesky_mask.masking.decision import DecisionRule, apply_decision


def _scene():
    """A flat 'ring' of level 100 (sigma 10), a heavy-tailed spot at (40, 40) whose core
    (r <= 2) the network found, a bright texture band not touching it, one extreme pixel."""
    rows, cols = 128, 128
    yy, xx = np.mgrid[:rows, :cols]
    r = np.hypot(yy - 40, xx - 40)
    frame = 100 + 2000 / (1 + (r / 2.0) ** 2) ** 1.2
    frame[90:100, 10:110] += 80  # texture: 8 sigma, far from the spot
    frame[20, 100] = 100 * 500  # an extreme pixel
    frame = frame.astype(np.float32)
    z = ((frame - 100) / 10).astype(np.float32)
    med = np.full_like(frame, 100)
    static = np.zeros(frame.shape, bool)
    core = r <= 2
    return frame, z, med, static, core, r


def test_off_is_the_plain_threshold():
    frame, z, med, static, core, _ = _scene()
    assert apply_decision(core, z, med, frame, static, DecisionRule.off()) is core


def test_growth_follows_the_wings_within_reach_and_leaves_texture():
    frame, z, med, static, core, r = _scene()
    out = apply_decision(core, z, med, frame, static, DecisionRule(grow_z=4.0, grow_px=12))
    assert out[core].all()
    assert out[(r > 3) & (r <= 8)].all()  # the wings above 4 sigma, connected to the core
    assert not out[r > 12 + 3].any()  # never beyond the reach
    assert not out[90:100].any()  # the texture band is not connected to a detected spot
    assert not out[20, 100]  # the extreme pixel needs its own rule


def test_extreme_pixels_are_spots_and_static_pixels_never():
    frame, z, med, static, core, _ = _scene()
    static[40, 40] = True
    rule = DecisionRule(extreme_z=50.0, extreme_ratio=50.0)
    out = apply_decision(np.zeros_like(core), z, med, frame, static, rule)
    assert out[20, 100] and out.sum() == 1  # the spot's core is 200 sigma but 21x its ring
    out = apply_decision(core, z, med, frame, static, rule)
    assert not out[40, 40]


def test_rules_round_trip_through_a_card_dict():
    rule = DecisionRule(grow_z=4.0, grow_px=8, extreme_z=50.0)
    assert DecisionRule.from_dict(rule.to_dict()) == rule
    assert DecisionRule.from_dict(None) == DecisionRule.off()


def test_extreme_rule_from_ring_stats_equals_the_image_rule(small_geometry, rng):
    """`decide` takes a sparse path for the extreme rule alone: same pixels as
    `apply_decision` on full z and level images, for both levels."""
    from xrd_bluesky_mask.masking.decision import decide
    from xrd_bluesky_mask.masking.preprocess import prepare_frame
    from xrd_bluesky_mask.masking.rings import local_stats, ring_stats

    from .frames import ring_frame

    frame, _ = ring_frame(small_geometry, rng)
    level = float(np.median(frame))
    for r, c, gain in ((30, 40, 2000), (100, 120, 80), (150, 60, 20), (10, 10, 3000)):
        frame[r, c] = level * gain
    f32, static = prepare_frame(frame, small_geometry)
    static[10, 10] = True
    valid = ~static & (f32 >= 0)
    rs = ring_stats(f32, valid, small_geometry, max_per_bin=256)
    stats = local_stats(f32, valid, small_geometry, rs)
    med = np.nan_to_num(rs.median, nan=0.0)[rs.bins.index].reshape(f32.shape)
    none = np.zeros(f32.shape, bool)
    for extreme in ({"extreme_z": 50.0, "extreme_ratio": 50.0},
                    {"extreme_z": 5.0, "extreme_ratio": 10.0}):
        ring_rule = DecisionRule(**extreme, level="ring")
        sparse = decide(none, f32, static, stats, ring_rule)
        dense = apply_decision(none, rs.excess(f32), med, f32, static, ring_rule)
        np.testing.assert_array_equal(sparse, dense)
        assert sparse[30, 40] and not sparse[10, 10]
        # the local level only refines the cell level upwards around each candidate: the local
        # rule fires on a subset of the image rule on cell levels, itself a subset of the ring
        local = decide(none, f32, static, stats, DecisionRule(**extreme))
        cells = apply_decision(none, stats.excess(f32), stats.level(f32.shape), f32, static,
                               DecisionRule(**extreme))
        assert not (local & ~cells).any() and not (cells & ~sparse).any()
        assert local[30, 40] and not local[10, 10]


def _po_scene(geometry, rng, *, integer: bool, width_deg: float = 0.1, po_width_deg: float = 6.0):
    """One ring (FWHM 1.4 px by default: sharp) with a strong preferred-orientation band
    (crests 80x the ring between the bands, narrower than a χ sector) on a low background, no
    spot; float32 or integer counts."""
    from xrd_bluesky_mask.masking.preprocess import prepare_frame

    from .frames import ring_frame

    frame, _ = ring_frame(geometry, rng, level=2.0, ring_tth=8.0, ring_peak=400.0,
                          width_deg=width_deg, po_strength=80.0, po_width_deg=po_width_deg)
    raw = frame.astype(np.int32) if integer else frame * np.float32(1.37)
    return prepare_frame(raw, geometry)


def _local(f32, static, geometry, bin_px=2.0):
    from xrd_bluesky_mask.masking.rings import local_stats, ring_stats

    valid = ~static & (f32 >= 0)
    return local_stats(f32, valid, geometry,
                       ring_stats(f32, valid, geometry, bin_px=bin_px, max_per_bin=256))


def test_local_rules_leave_preferred_orientation_bands_that_the_ring_median_cuts(
        small_geometry, rng):
    """A band's crest is far above its whole ring's median (most of the ring is the dim part
    between the bands), so the ring-level extreme rule cuts it; the local level (the pixel's
    cell and the opposite cell) keeps it, on float32 and integer counts alike."""
    from xrd_bluesky_mask.masking.decision import decide

    extreme = {"extreme_z": 50.0, "extreme_ratio": 50.0}
    for integer, width, bin_px in ((False, 0.1, 2.0), (True, 0.1, 0.5), (False, 0.3, 0.5),
                                   (True, 0.3, 2.0)):
        f32, static = _po_scene(small_geometry, rng, integer=integer, width_deg=width)
        stats = _local(f32, static, small_geometry, bin_px)
        none = np.zeros(f32.shape, bool)
        ring = decide(none, f32, static, stats, DecisionRule(**extreme, level="ring"))
        assert ring.sum() > 50  # the property the local level is for: the ring rule fires
        for rule in (DecisionRule(**extreme), DecisionRule(grow_z=4.0, **extreme)):
            assert not decide(none, f32, static, stats, rule).any()


def test_local_extreme_rule_still_catches_spots_on_a_band_and_between_bands(small_geometry, rng):
    from xrd_bluesky_mask.masking.decision import decide

    f32, static = _po_scene(small_geometry, rng, integer=False)
    stats0 = _local(f32, static, small_geometry)
    on_ring = (np.abs(small_geometry.tth_deg() - 8.0) < 0.03) & ~static
    crest = float(np.percentile(f32[on_ring], 99))
    band = on_ring & (f32 > 0.5 * crest)
    dim = on_ring & (f32 < 0.02 * crest)
    picks = [tuple(np.argwhere(band)[0]), tuple(np.argwhere(dim)[len(np.argwhere(dim)) // 2])]
    flat = np.array([r * f32.shape[1] + c for r, c in picks])
    near = stats0.neighbourhood_level(f32, ~static, flat)
    assert near[0] > 5 * near[1]  # one on the band's crest, one on the dim ring between
    for (r, c), lv in zip(picks, near, strict=True):
        f32[r, c] = 400.0 * max(float(lv), 1.0)
    stats = _local(f32, static, small_geometry)
    rule = DecisionRule(extreme_z=50.0, extreme_ratio=50.0)
    none = np.zeros(f32.shape, bool)
    out = decide(none, f32, static, stats, rule)
    assert all(out[p] for p in picks) and out.sum() == len(picks)


def test_a_rule_level_other_than_local_or_ring_is_refused():
    import pytest

    with pytest.raises(ValueError, match="local, ring"):
        DecisionRule(extreme_z=50.0, level="sector")


def test_veto_drops_band_crests_the_network_took_for_spots_and_keeps_spots_on_the_band(
        small_geometry, rng):
    """Components along a preferred-orientation band's crest have a twin as bright at χ + 180°
    and sit near the powder around them, so the veto drops them; a spot 3x the band beside them
    stays (no twin), and so does a faint spot (3x) on the dim ring between the bands. The band
    spans more of χ than the 64 px window around a pixel, as bands do on full-size frames (on
    this 256 px detector the ring is short: a 6° band would be narrower than the window)."""
    from scipy import ndimage

    from xrd_bluesky_mask.masking.decision import decide, veto_components

    f32, static = _po_scene(small_geometry, rng, integer=False, po_width_deg=25.0)
    on_ring = (np.abs(small_geometry.tth_deg() - 8.0) < 0.03) & ~static
    crest = float(np.percentile(f32[on_ring], 99))
    band = on_ring & (f32 > 0.5 * crest)
    dim = on_ring & (f32 < 0.02 * crest) & (f32 > 0)
    crest_px = np.argwhere(band)
    spot_on_band = tuple(crest_px[len(crest_px) // 3])
    spot_between = tuple(np.argwhere(dim)[len(np.argwhere(dim)) // 2])
    stats0 = _local(f32, static, small_geometry)
    flat = np.array([r * f32.shape[1] + c for r, c in (spot_on_band, spot_between)])
    levels = stats0.neighbourhood_level(f32, ~static, flat)
    for (r, c), lv in zip((spot_on_band, spot_between), levels, strict=True):
        f32[r - 1:r + 2, c - 1:c + 2] = 3.0 * max(float(lv), 1.0)
    stats = _local(f32, static, small_geometry)
    spots = np.zeros(f32.shape, bool)
    for r, c in (spot_on_band, spot_between):
        spots[r - 1:r + 2, c - 1:c + 2] = True
    top = on_ring & (f32 > 0.9 * crest)  # the network's mistake: the band's crest for spots
    crest_only = top & ~ndimage.binary_dilation(spots, iterations=3)
    network = crest_only | spots
    _, n_before = ndimage.label(crest_only, structure=np.ones((3, 3), bool))
    assert n_before >= 2 and crest_only.sum() > 10

    out = veto_components(network, f32, static, stats, 1.5)
    assert (out & spots).sum() == spots.sum()  # both spots kept whole
    assert (out & crest_only).sum() < 0.2 * crest_only.sum()  # the crest is dropped
    assert not (out & ~network).any()  # a veto never adds a pixel
    rule = DecisionRule(veto_ratio=1.5)
    assert rule.active and np.array_equal(decide(network, f32, static, stats, rule), out)
    assert np.array_equal(veto_components(network, f32, static, stats, 0.5), network)


def test_veto_keeps_a_component_whose_ring_has_no_other_side_on_the_detector(rng):
    """With the beam near the left edge, the ring of a pixel far to the right leaves the
    detector at χ + 180°: no twin, no evidence of preferred orientation, nothing dropped, even
    for a component at the level of the powder around it."""
    from xrd_bluesky_mask.geometry import make_geometry
    from xrd_bluesky_mask.masking.decision import veto_components

    geometry = make_geometry((256, 256), pixel_size_m=150e-6, distance_m=0.12,
                             center_px=(128.0, 40.0))
    f32 = rng.poisson(100.0, geometry.shape).astype(np.float32)
    static = np.zeros(geometry.shape, bool)
    stats = _local(f32, static, geometry)
    network = np.zeros(geometry.shape, bool)
    network[126:130, 198:202] = True  # 160 px from the beam: its ring is cut off on the left
    network[126:130, 58:62] = True    # 20 px from the beam: a whole ring
    out = veto_components(network, f32, static, stats, 1.5, 2.5)
    assert out[126:130, 198:202].all()  # kept: no twin
    assert not out[126:130, 58:62].any()  # dropped: as bright as its twin and its surroundings
