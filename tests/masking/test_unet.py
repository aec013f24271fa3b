"""UNetMasker with a real (small, untrained) dlsia U-Net."""

from __future__ import annotations

import numpy as np
import pytest

from xrd_bluesky_mask.masking import Masker
from xrd_bluesky_mask.masking.preprocess import network_input, prepare_frame
from xrd_bluesky_mask.masking.unet import UNetMasker

from .frames import ring_frame


@pytest.fixture(scope="module")
def masker(tiny_model_dir):
    return UNetMasker(tiny_model_dir, device="cpu")


def test_is_a_masker(masker):
    assert isinstance(masker, Masker)
    s = masker.settings()
    assert s["model_id"] == "tiny-untrained" and len(s["model_sha256"]) == 64
    assert s["tiling_kind"] == "halo" and s["device"] == "cpu"


def test_predict_shapes_and_static(masker, small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng, spots=[(80, 90, 2.0, 4000.0)])
    frame[:, 10:12] = -1
    res = masker.predict(frame, small_geometry)
    assert res.spots.shape == res.static.shape == res.probability.shape == frame.shape
    assert res.spots.dtype == bool and res.probability.dtype == np.float32
    assert 0.0 <= res.probability.min() and res.probability.max() <= 1.0
    assert res.static[:, 10:12].all() and not (res.spots & res.static).any()
    np.testing.assert_array_equal(res.spots, (res.probability >= masker.threshold) & ~res.static)
    assert {"normalise", "network", "decision"} <= set(res.timings)


def test_threshold_override_changes_mask(tiny_model_dir, small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng)
    base = UNetMasker(tiny_model_dir, device="cpu").predict(frame, small_geometry)
    p = base.probability[~base.static]
    t_lo, t_hi = (float(np.quantile(p, q)) for q in (0.5, 0.99))
    assert 0 < t_lo < t_hi < 1  # the cuts fall inside the probabilities this frame has
    lo = UNetMasker(tiny_model_dir, threshold=t_lo, device="cpu").predict(frame, small_geometry)
    hi = UNetMasker(tiny_model_dir, threshold=t_hi, device="cpu").predict(frame, small_geometry)
    np.testing.assert_allclose(lo.probability, base.probability)
    np.testing.assert_array_equal(lo.spots, (base.probability >= t_lo) & ~base.static)
    np.testing.assert_array_equal(hi.spots, (base.probability >= t_hi) & ~base.static)
    assert lo.spots.sum() > hi.spots.sum() > 0
    with pytest.raises(ValueError, match="threshold"):
        UNetMasker(tiny_model_dir, threshold=1.5)
    with pytest.raises(ValueError, match="inference"):
        UNetMasker(tiny_model_dir, inference="sliding")


def test_tta_is_the_mean_over_rotations_and_flips(masker, small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng, spots=[(40, 200, 3.0, 3000.0)])
    f32, static = prepare_frame(frame, small_geometry)
    x = network_input(f32, static, small_geometry)
    manual = []
    for k in range(8):
        xk = np.flip(x, axis=-1) if k >= 4 else x
        xk = np.rot90(xk, k % 4, axes=(-2, -1))
        pk, _ = masker.probability(np.ascontiguousarray(xk))
        pk = np.rot90(pk, -(k % 4))
        manual.append(np.flip(pk, axis=-1) if k >= 4 else pk)
    tta = UNetMasker(masker.model, tta=True)
    p, _ = tta.probability(x)
    np.testing.assert_allclose(p, np.mean(manual, axis=0), atol=1e-5)


def test_quilt_reference_path_runs_and_agrees_roughly(tiny_model_dir, small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng)
    halo = UNetMasker(tiny_model_dir, device="cpu").predict(frame, small_geometry)
    quilt = UNetMasker(tiny_model_dir, inference="quilt", window=128, step=96, border=16,
                       device="cpu").predict(frame, small_geometry)
    assert {"tile", "stitch"} <= set(quilt.timings)
    # the receptive field of a depth-2 net is small: windows with 16 px borders see enough;
    # only the frame's edge strip differs (zero padding in the net vs reflect padding)
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(halo.probability[inner] - quilt.probability[inner]).max() < 1e-4


def test_packaged_light_model_by_name_and_id(small_geometry, rng):
    light = UNetMasker("light", device="cpu")
    assert light.model.card.model_id == "xrdmask-light-v1"
    assert light.model.card.architecture.base_channels == 4
    assert UNetMasker("xrdmask-light-v1", device="cpu").model.card.sha256 == \
        light.model.card.sha256
    heldout = light.model.card.metrics["heldout"]["overall"]["unet"]
    assert heldout["tnr"] >= 0.999 and heldout["recall"] > 0.85
    frame, _ = ring_frame(small_geometry, rng, spots=[(80, 90, 2.0, 4000.0)])
    assert light.predict(frame, small_geometry).spots.shape == frame.shape
    from xrd_bluesky_mask.errors import ModelError

    with pytest.raises(ModelError, match="no model"):
        UNetMasker("heavy", device="cpu")


def test_candidate_tiles_on_the_fast_path_or_everywhere(tiny_model_dir, small_geometry, rng):
    # flat background: nothing but the spot stands out from its ring
    frame, _ = ring_frame(small_geometry, rng, ring_peak=0.0, spots=[(40, 50, 1.5, 8000.0)])
    off = UNetMasker(tiny_model_dir, device="cpu", precision="fp32")
    fast = UNetMasker(off.model, precision="fp32", candidates="fast")
    on = UNetMasker(off.model, precision="fp32", candidates="on")
    assert off.candidates == "off" and fast.settings()["candidate_rule"]["pixel_z"] == 8.0
    assert "candidate_rule" not in off.settings()
    whole = off.predict(frame, small_geometry)
    assert whole.probability is not None
    # "fast" leaves the single-frame path (and its probability image) whole
    fast_one = fast.predict(frame, small_geometry)
    assert fast_one.probability is not None
    np.testing.assert_array_equal(fast_one.probability, whole.probability)
    skipped = on.predict(frame, small_geometry)
    assert skipped.probability is not None
    ran = skipped.probability > 0
    assert ran[40, 50] and 0 < ran.mean() < 1  # the spot's blocks ran, not the whole frame
    np.testing.assert_allclose(skipped.probability[ran], whole.probability[ran], atol=1e-5)
    assert not skipped.spots[~ran].any()
    batch = fast.predict_batch([frame], small_geometry)[0]
    np.testing.assert_array_equal(batch.spots, skipped.spots)
    assert off.predict_batch([frame], small_geometry)[0].spots.sum() == whole.spots.sum()
    with pytest.raises(ValueError, match="candidates"):
        UNetMasker(off.model, inference="quilt", candidates="on")
    with pytest.raises(ValueError, match="candidates"):
        UNetMasker(off.model, candidates="yes")


def test_decision_step_of_the_card_runs_on_every_path(tiny_model_dir, tmp_path,
                                                      small_geometry, rng):
    """A card's decision step is applied by `predict` and by the fast path alike: with a
    threshold the untrained network never reaches, only the model-free extreme-pixel rule
    can mask, and it masks the extreme pixel and nothing else."""
    import shutil

    from xrd_bluesky_mask.masking.decision import DecisionRule
    from xrd_bluesky_mask.models.store import read_card, write_card

    frame, _ = ring_frame(small_geometry, rng)
    frame[60, 70] = float(np.median(frame)) * 5000
    folder = shutil.copytree(tiny_model_dir, tmp_path / "with-rule")
    rule = DecisionRule(extreme_z=50.0, extreme_ratio=50.0)
    card = read_card(folder)
    write_card(folder, card.model_copy(update={"decision": rule.to_dict(),
                                               "threshold": 0.999999}))
    ruled = UNetMasker(folder, device="cpu")
    assert ruled.decision == rule and ruled.settings()["decision"] == rule.to_dict()
    one = ruled.predict(frame, small_geometry)
    assert one.probability.max() < ruled.threshold
    assert one.spots[60, 70] and one.spots.sum() == 1
    (fast,) = ruled.predict_batch([frame], small_geometry)
    np.testing.assert_array_equal(fast.spots, one.spots)
    plain = UNetMasker(folder, device="cpu", decision=DecisionRule.off())
    assert not plain.predict(frame, small_geometry).spots.any()
    assert plain.settings()["decision"] == "off"
