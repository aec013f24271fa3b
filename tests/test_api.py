"""`predict_mask`, the one-line entry point."""

from __future__ import annotations

import numpy as np
import pytest

import xrd_bluesky_mask
from xrd_bluesky_mask.errors import ConfigError, GeometryError
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.masking.unet import UNetMasker

from .masking.frames import ring_frame


def test_predict_mask_with_poni_text_path_and_masker(small_geometry, rng, tmp_path):
    frame, _ = ring_frame(small_geometry, rng, spots=[(100, 100, 2.0, 5000.0)])
    poni = tmp_path / "d.poni"
    poni.write_text(small_geometry.poni_text)
    m1 = xrd_bluesky_mask.predict_mask(frame, poni, masker="classical")
    m2 = xrd_bluesky_mask.predict_mask(frame, small_geometry.poni_text,
                                       masker=RingOutlierMasker())
    assert m1.dtype == bool and m1.shape == frame.shape and m1[100, 100]
    np.testing.assert_array_equal(m1, m2)


def test_predict_mask_with_a_unet_instance(small_geometry, rng, tiny_model_dir):
    frame, _ = ring_frame(small_geometry, rng)
    frame[5, :] = -1
    mask = xrd_bluesky_mask.predict_mask(frame, small_geometry,
                                         masker=UNetMasker(tiny_model_dir))
    assert mask.shape == frame.shape and mask[5].all()


def test_predict_mask_errors(small_geometry, tmp_path):
    with pytest.raises(GeometryError, match="not found"):
        xrd_bluesky_mask.predict_mask(np.ones((256, 256)), tmp_path / "x.poni")
    with pytest.raises(GeometryError, match="does not match"):
        xrd_bluesky_mask.predict_mask(np.ones((128, 256)), small_geometry, masker="classical")
    with pytest.raises(ConfigError, match="unknown masker 'magic'; known: .*classical"):
        xrd_bluesky_mask.predict_mask(np.ones((256, 256)), small_geometry, masker="magic")
    with pytest.raises(TypeError, match="not a Masker"):
        xrd_bluesky_mask.predict_mask(np.ones((256, 256)), small_geometry, masker=object())
