"""The retraining gate's guard: spot-free frames where a candidate must not mask more."""

from __future__ import annotations

import pytest

from xrd_bluesky_mask.apps.evaluate import heldout_cases
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.models import load_model
from xrd_bluesky_mask.retrain import judge
from xrd_bluesky_mask.training.guard import (
    GUARD_SEED,
    GUARD_STYLES,
    guard_frames,
    guard_verdict,
    score_guard,
)

#: Small guard frames keep the test quick; the gate's default is 512 px.
SIZE = 256


def _row(style, seed, masked, rwp):
    return {"style": style, "seed": seed, "size_px": SIZE, "masked_pct": masked, "rwp": rwp}


def test_the_guard_frames_are_spot_free_and_apart_from_the_evaluation():
    frames = guard_frames(SIZE)
    assert [f.config.name for f in frames] == list(GUARD_STYLES)
    assert len(GUARD_STYLES) == 5 and not any(f.labels.any() for f in frames)
    assert guard_frames(SIZE) is frames  # simulated once per process
    evaluated = {c.seed for c in heldout_cases(400)}
    assert not evaluated & {GUARD_SEED + i for i in range(len(GUARD_STYLES))}


@pytest.mark.timeout(120)
def test_a_candidate_that_masks_more_is_refused_worst_frame_first():
    base_model = load_model(device="cpu")
    base = UNetMasker(base_model, device="cpu")
    loose = UNetMasker(base_model, device="cpu", threshold=0.02)  # a real, worse candidate
    scores = score_guard({"new": loose, "base": base}, SIZE)
    assert [r["style"] for r in scores["base"]] == list(GUARD_STYLES)
    gain = [n["masked_pct"] - b["masked_pct"] for n, b in zip(scores["new"], scores["base"],
                                                              strict=True)]
    assert max(gain) > 0.01
    ok, why = guard_verdict(scores["new"], scores["base"])
    worst = GUARD_STYLES[gain.index(max(gain))]
    assert not ok
    assert why.startswith(f"spot-free guard frame {worst} (seed "), why
    assert f"{max(gain):+.3f} points" in why.split(";")[0]

    # the same model against itself passes, and the held-out verdict then decides
    ok, same = guard_verdict(scores["base"], scores["base"])
    assert ok and same.startswith("spot-free guard frames (5) no worse")
    heldout_better = ({"recall": 0.8, "tnr": 0.999}, {"recall": 0.5, "tnr": 0.999})
    assert judge(*heldout_better, 0.998, 0.001, (ok, same)) == (
        True, judge(*heldout_better, 0.998, 0.001)[1] + "; " + same)
    refused, reason = judge(*heldout_better, 0.998, 0.001, (False, why))
    assert not refused and reason.startswith(why + "; held-out recall 0.8000")


def test_the_verdict_weighs_masked_share_before_rwp_and_allows_the_tolerance():
    base = [_row("sharp_rings", 1, 0.000, 0.0800), _row("grainy_high", 2, 0.026, 0.0018),
            _row("grainy_low", 3, 0.100, 0.0500)]
    within = [_row("sharp_rings", 1, 0.009, 0.0815), _row("grainy_high", 2, 0.020, 0.0010),
              _row("grainy_low", 3, 0.105, 0.0505)]
    ok, why = guard_verdict(within, base)  # +0.009 points and +1.9 % are allowed
    assert ok and "largest change sharp_rings, masked +0.009 points" in why
    worse = [_row("sharp_rings", 1, 0.000, 0.0900), _row("grainy_high", 2, 0.218, 0.0052),
             _row("grainy_low", 3, 0.150, 0.0500)]
    ok, why = guard_verdict(worse, base)
    assert not ok
    assert why.startswith(
        "spot-free guard frame grainy_high (seed 2, 256 px) worse: masked 0.218 % of its "
        "pixels (base model 0.026 %, +0.192 points), Rwp 0.0052 (base model 0.0018, +188.9 %), "
        "0.01 points and 2 % allowed; also worse: grainy_low masked +0.050 points"), why
    assert why.endswith("sharp_rings masked +0.000 points, Rwp +12.5 %")  # Rwp alone: last
    with pytest.raises(ValueError, match="different frames"):
        guard_verdict(worse[:2], base[1:])
