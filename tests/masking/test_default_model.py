"""The packaged default model on a real detector frame (Pilatus 1M, CeO2 with a few grains)."""

from __future__ import annotations

import numpy as np

from xrd_bluesky_mask.geometry import as_geometry
from xrd_bluesky_mask.io import read_frame
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.models import DEFAULT_MODEL_DIR

from ..real_data import require_real_data


def test_default_model_masks_the_extreme_pixels_of_sharp_rings_and_leaves_the_rings():
    """The frame's brightest pixels sit hundreds of times above their ring's median: spots,
    whatever the network says (the card's decision step); the powder rings stay."""
    real = require_real_data()
    frame = np.flipud(read_frame(real / "CeO2_Pilatus1M.tif"))  # the PONI's orientation
    geometry = as_geometry(real / "CeO2_Pilatus1M.poni", frame.shape)
    masker = UNetMasker(DEFAULT_MODEL_DIR, device="cpu")
    assert masker.decision.active
    res = masker.predict(frame, geometry)
    valid = ~res.static
    brightest = np.argsort(np.where(valid, frame, -np.inf), axis=None)[::-1][:8]
    assert res.spots.ravel()[brightest].all()
    assert float(res.spots[valid].mean()) < 0.005  # 0.29 % measured
