"""FastPipeline gives the reference path's masks and patterns, batched."""

import numpy as np
import pytest

from xrd_bluesky_mask.accel import FastPipeline
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.pipeline import process_frame
from xrd_bluesky_mask.simulate import simulate_frame


@pytest.fixture(scope="module")
def sims():
    return [simulate_frame(p, seed=i, shape=(512, 512))
            for i, p in enumerate(("rings_spots", "spots_po", "spots_texture"))]


@pytest.fixture(scope="module")
def unet():
    return UNetMasker()


@pytest.mark.parametrize(("tile", "on_device"), [(None, True), (192, False), ("auto", "auto")])
def test_fast_path_agrees_with_reference(sims, unet, tile, on_device):
    geometry = sims[0].geometry
    fast = FastPipeline(unet, geometry, tile=tile, integrate_on_device=on_device)
    try:
        out = fast.process([s.image for s in sims])
    finally:
        fast.close()
    assert len(out) == len(sims)
    for s, r in zip(sims, out, strict=True):
        ref = process_frame(s.image, s.geometry, unet)
        assert np.mean(r.mask.spots == ref.mask.spots) >= 0.9999
        np.testing.assert_array_equal(r.mask.static, ref.mask.static)
        a, b = ref.pattern.values, r.pattern.values
        assert np.nanmax(np.abs(a - b)) < 1e-4 * np.nanmax(a)
        assert set(r.timings) >= {"normalise", "network", "integrate", "total"}
    assert any(r.mask.spots.any() for r in out)


def test_needs_unet_and_geometry(sims):
    with pytest.raises(TypeError, match="UNetMasker"):
        FastPipeline(RingOutlierMasker(), sims[0].geometry)
    with pytest.raises(ValueError, match="geometry"):
        FastPipeline(UNetMasker(), None)


def test_empty_batch(sims, unet):
    assert FastPipeline(unet, sims[0].geometry).process([]) == []
