"""Training data from annotated frames: held-out split, label checks, the 'better' rule."""

from __future__ import annotations

import numpy as np
import pytest

from xrd_bluesky_mask.errors import AnnotationError
from xrd_bluesky_mask.retrain import RetrainSettings, fine_tune, is_better, judge
from xrd_bluesky_mask.training.annotated import (
    AnnotatedFrames,
    check_labels,
    split_heldout,
    tiles_from_annotated,
)


def _run(uid, n, small_geometry, spot_px=0, shape=(256, 256)):
    codes = []
    for _ in range(n):
        c = np.zeros(shape, np.uint8)
        c.flat[:spot_px] = 1
        codes.append(c)
    frames = [np.ones(shape, np.float32) for _ in range(n)]
    return AnnotatedFrames(uid, list(range(n)), frames, codes, small_geometry)


def test_split_holds_out_a_share_of_each_run_and_keeps_training_frames(small_geometry):
    runs = [_run("a", 8, small_geometry), _run("b", 2, small_geometry)]
    split_heldout(runs, 0.25, seed=0)
    assert len(runs[0].heldout) == 2 and runs[1].heldout == []
    assert sorted(runs[0].heldout + runs[0].train_indices) == list(range(8))
    tiny = [_run("c", 1, small_geometry), _run("d", 1, small_geometry)]
    split_heldout(tiny, 0.25, seed=0)  # floor(0.25) = 0 frames: one is held out anyway
    assert sum(len(r.heldout) for r in tiny) == 1 and sum(len(r.train_indices) for r in tiny) == 1
    with pytest.raises(AnnotationError, match="at least 2"):
        split_heldout([_run("e", 1, small_geometry)], 0.25, seed=0)


def test_labels_are_checked(small_geometry):
    runs = [_run("a", 3, small_geometry, spot_px=100)]
    split_heldout(runs, 0.34, seed=0)
    assert check_labels(runs, min_spot_px=200, window=256) == 200
    with pytest.raises(AnnotationError, match="only 200 spot pixels .* at least 201"):
        check_labels(runs, min_spot_px=201, window=256)
    with pytest.raises(AnnotationError, match="smaller than the 512 px training window"):
        check_labels(runs, min_spot_px=1, window=512)


def test_codes_other_than_0_and_1_carry_no_label(small_geometry):
    run = _run("a", 2, small_geometry)
    run.codes[0][:64] = 255
    run.codes[0][64:70] = 2
    run.codes[0][100:104, 100:104] = 1
    run.heldout = [1]
    tiles = tiles_from_annotated([run], window=256)
    y = tiles.y[0].numpy()
    assert (y[:70] == -1).all() and (y[100:104, 100:104] == 1).all()
    assert set(np.unique(y[70:])) <= {0, 1, -1}


def test_the_better_rule():
    base = {"recall": 0.3, "tnr": 0.9997}
    assert is_better({"recall": 0.7, "tnr": 0.9975}, base, 0.998, 0.001)
    assert not is_better({"recall": 0.7, "tnr": 0.9965}, base, 0.998, 0.001)  # too many FP
    assert not is_better({"recall": 0.3, "tnr": 0.9999}, base, 0.998, 0.001)  # no gain
    low = {"recall": 0.3, "tnr": 0.99}  # a base below the target TNR sets the floor
    assert is_better({"recall": 0.5, "tnr": 0.9895}, low, 0.998, 0.001)
    assert not is_better({"recall": float("nan"), "tnr": 1.0}, base, 0.998, 0.001)


def test_the_verdict_says_why_in_numbers():
    base = {"recall": 0.5, "tnr": 0.9990}
    better, why = judge({"recall": 0.8, "tnr": 0.99425}, base, 0.998, 0.001)
    assert not better
    assert why.startswith("held-out TNR 0.99425 below the 0.99700 allowed (the lower of the "
                          "base model's 0.99900 and target_tnr 0.998, less tnr_tolerance 0.001)")
    assert why.endswith("held-out recall 0.8000 (base model 0.5000)")
    better, why = judge({"recall": 0.4, "tnr": 0.9995}, base, 0.998, 0.001)
    assert not better and why.startswith("held-out recall 0.4000 (base model 0.5000) not higher")
    better, why = judge({"recall": 0.8, "tnr": 0.9985}, base, 0.998, 0.001)
    assert better and why.startswith("held-out recall 0.8000 (base model 0.5000) higher")
    assert "held-out TNR 0.99850 within the 0.99700 allowed" in why
    better, why = judge({"recall": float("nan"), "tnr": 1.0}, base, 0.998, 0.001)
    assert not better and "no spot pixel" in why


def test_validation_tiles_without_spots_are_a_clear_error(tmp_path):
    """Two training tiles, one with spots: with this seed the spot-free one is validated."""
    from xrd_bluesky_mask.models import load_model
    from xrd_bluesky_mask.simulate import simulate_frame

    sims = [simulate_frame("perfect", seed=k, shape=(256, 256)) for k in range(3)]
    codes = [np.zeros((256, 256), np.uint8) for _ in sims]
    codes[0][100:110, 100:110] = 1
    run = AnnotatedFrames("u", [0, 1, 2], [s.image for s in sims], codes, sims[0].geometry,
                          heldout=[2])
    settings = RetrainSettings(epochs=1, batch_size=2, negative_keep=1.0, seed=1,
                               rehearsal=0.0)  # simulated tiles would bring spots
    with pytest.raises(AnnotationError, match="validation hold no spot pixels"):
        fine_tune([run], load_model(device="cpu"), settings, tmp_path)
