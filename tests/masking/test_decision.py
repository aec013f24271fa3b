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
    `apply_decision` on full z and median images."""
    from xrd_bluesky_mask.masking.decision import decide
    from xrd_bluesky_mask.masking.preprocess import prepare_frame
    from xrd_bluesky_mask.masking.rings import ring_stats

    from .frames import ring_frame

    frame, _ = ring_frame(small_geometry, rng)
    level = float(np.median(frame))
    for r, c, gain in ((30, 40, 2000), (100, 120, 80), (150, 60, 20), (10, 10, 3000)):
        frame[r, c] = level * gain
    f32, static = prepare_frame(frame, small_geometry)
    static[10, 10] = True
    stats = ring_stats(f32, ~static & (f32 >= 0), small_geometry, max_per_bin=256)
    med = np.nan_to_num(stats.median, nan=0.0)[stats.bins.index].reshape(f32.shape)
    none = np.zeros(f32.shape, bool)
    for rule in (DecisionRule(extreme_z=50.0, extreme_ratio=50.0),
                 DecisionRule(extreme_z=5.0, extreme_ratio=10.0)):
        sparse = decide(none, f32, static, stats, rule)
        dense = apply_decision(none, stats.excess(f32), med, f32, static, rule)
        np.testing.assert_array_equal(sparse, dense)
        assert sparse[30, 40] and not sparse[10, 10]
