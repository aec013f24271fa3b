"""Tiling exactness: cutting and stitching an identity network gives back its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrd_bluesky_mask.masking.tiling import HaloPredictor, QuiltPredictor


class Identity(torch.nn.Module):
    """Returns its input: any stitching error shows up as a difference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class Doubler(torch.nn.Module):
    """Twice its input (checks that the output is the network's, not a copy of the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


SHAPES = [(256, 256), (300, 517), (97, 130), (640, 384)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "predictor",
    [
        QuiltPredictor(window=256, step=192, border=32),
        QuiltPredictor(window=128, step=64, border=16, batch_size=5),
        QuiltPredictor(window=64, step=64, border=0),
        HaloPredictor(tile=128, halo=16),
        HaloPredictor(tile=None),
    ],
    ids=["quilt256", "quilt128", "quilt64-noborder", "halo128", "whole"],
)
def test_identity_roundtrip_is_exact(shape, predictor, rng):
    x = torch.from_numpy(rng.normal(size=(1, 2, *shape)).astype(np.float32))
    out = predictor(x, Identity())
    assert out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), x.numpy(), rtol=0, atol=1e-5)
    out2 = predictor(x, Doubler())
    np.testing.assert_allclose(out2.numpy(), 2 * x.numpy(), rtol=0, atol=2e-5)
    assert set(predictor.timings) >= {"tile", "network", "stitch"}


def test_quilt_rejects_bad_settings():
    with pytest.raises(ValueError, match="border"):
        QuiltPredictor(window=64, step=32, border=32)
    with pytest.raises(ValueError, match="step"):
        QuiltPredictor(window=64, step=128, border=8)


def test_halo_equals_whole_frame_for_a_convolutional_net():
    """Halo tiles with enough context reproduce one whole-frame pass of a real dlsia U-Net."""
    from xrd_bluesky_mask.models.network import NetworkConfig, build_network

    torch.manual_seed(1)
    net = build_network(NetworkConfig(depth=3, base_channels=4)).eval()
    x = torch.randn(1, 4, 200, 264)
    with torch.inference_mode():
        whole = HaloPredictor(tile=None, multiple=4)(x, net)
        halo = HaloPredictor(tile=96, halo=64, multiple=4)(x, net)
    agree = (whole.argmax(1) == halo.argmax(1)).float().mean().item()
    assert agree > 0.999
    np.testing.assert_allclose(halo.numpy(), whole.numpy(), atol=1e-3)


def test_batchnorm_folding_keeps_outputs():
    from xrd_bluesky_mask.models.network import NetworkConfig, build_network, fold_batchnorm

    torch.manual_seed(3)
    net = build_network(NetworkConfig(depth=3, base_channels=4))
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 4, 64, 64) * 3 + 1)  # non-trivial running statistics
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # original intact
    x = torch.randn(2, 4, 96, 80)
    with torch.inference_mode():
        np.testing.assert_allclose(folded(x).numpy(), net(x).numpy(), atol=1e-4)
