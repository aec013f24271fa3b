"""Rehearsal tiles: simulated scenes mixed into fine-tuning, deterministic, in the given share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrd_bluesky_mask.models import load_model
from xrd_bluesky_mask.retrain import RetrainSettings, fine_tune
from xrd_bluesky_mask.training.annotated import AnnotatedFrames
from xrd_bluesky_mask.training.rehearsal import (
    REHEARSAL_STYLES,
    frame_tiles,
    rehearsal_count,
    rehearsal_tiles,
)

WINDOW = 64  #: small tiles (frames of 128 px) keep the test quick


def test_the_share_sets_the_count():
    assert rehearsal_count(27, 0.5) == 27
    assert rehearsal_count(30, 0.25) == 10 and rehearsal_count(10, 0.75) == 30
    assert rehearsal_count(27, 0.0) == 0 and rehearsal_count(0, 0.5) == 0


def test_rehearsal_tiles_are_deterministic_and_hold_spot_free_scenes():
    a = rehearsal_tiles(20, window=WINDOW, seed=3)
    frame_tiles.cache_clear()  # simulated again from nothing: the same tiles
    b = rehearsal_tiles(20, window=WINDOW, seed=3)
    assert a.x.shape == (20, 4, WINDOW, WINDOW) and a.y.shape == (20, WINDOW, WINDOW)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    more = rehearsal_tiles(24, window=WINDOW, seed=3)  # a larger count extends a smaller one
    assert torch.equal(more.x[:20], a.x)
    other = rehearsal_tiles(20, window=WINDOW, seed=4)
    assert not torch.equal(other.x, a.x)
    spots = (a.y == 1).flatten(1).any(1)
    assert spots.any() and (~spots).sum() >= 5  # spot tiles and spot-free ones
    assert REHEARSAL_STYLES[1::2] and not any(s in REHEARSAL_STYLES[0::2]
                                              for s in ("negative_sharp", "negative_grainy"))
    with pytest.raises(ValueError, match="at least 1"):
        rehearsal_tiles(0, window=WINDOW)


@pytest.mark.timeout(180)
def test_fine_tuning_mixes_them_in_at_the_given_share(tmp_path):
    from xrd_bluesky_mask.simulate import simulate_frame

    sims = [simulate_frame("rings_spots", seed=k, shape=(128, 128)) for k in range(3)]
    codes = [np.where(s.static_mask, 2, s.labels).astype(np.uint8) for s in sims]
    run = AnnotatedFrames("u", [0, 1, 2], [s.image for s in sims], codes, sims[0].geometry,
                          heldout=[2])
    base = load_model(device="cpu")
    settings = RetrainSettings(epochs=1, batch_size=4, window=WINDOW, negative_keep=1.0,
                               rehearsal=0.5, guard=False, seed=1, device="cpu")
    result = fine_tune([run], base, settings, tmp_path / "half")
    annotated = result.n_tiles - result.n_rehearsal
    assert annotated > 0 and result.n_rehearsal == annotated  # half of all tiles
    data = result.card.training["data"]
    assert data["tiles"] == annotated and data["rehearsal"]["tiles"] == result.n_rehearsal
    assert data["rehearsal"]["share"] == 0.5 and "negative_grainy" in data["rehearsal"]["scenes"]
    assert result.card.training["train_tiles"] + result.card.training["val_tiles"] == (
        result.n_tiles)
    # trained on, never validated: the threshold is chosen on the annotated tiles alone
    assert result.card.training["val_tiles"] == round(settings.val_fraction * annotated)
    assert result.guard == {} and "guard" not in result.verdict

    off = fine_tune([run], base, settings.model_copy(update={"rehearsal": 0.0}),
                    tmp_path / "off")
    assert off.n_rehearsal == 0 and off.n_tiles == annotated
