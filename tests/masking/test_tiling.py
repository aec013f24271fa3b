"""Tiling exactness: cutting and stitching an identity network gives back its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrd_bluesky_mask.masking.tiling import (
    SKIPPED_LOGIT,
    CandidateRule,
    HaloPredictor,
    QuiltPredictor,
)


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


def _excess_input(rows: int, cols: int, spots: list[tuple[int, int]], z: float) -> torch.Tensor:
    """Network-like input: noise everywhere, ring excess ``z`` at single pixels ``spots``."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, rows, cols, generator=g) * 0.05
    for r, c in spots:
        x[0, 1, r, c] = float(np.arcsinh(z / 2) / 3)
    return x


def test_candidate_blocks_follow_the_ring_excess():
    rule = CandidateRule(pixel_z=8.0, mean_z=1.0, block=64, reach=8)
    x = _excess_input(256, 200, [(10, 10), (160, 30)], z=20.0)
    blocks = rule.active_blocks(x)[0]
    assert blocks.shape == (4, 4)
    assert set(map(tuple, torch.nonzero(blocks).tolist())) == {(0, 0), (2, 0)}
    near_edge = rule.active_blocks(_excess_input(256, 200, [(60, 60)], z=20.0))[0]
    assert near_edge[:2, :2].all() and near_edge.sum() == 4  # within reach of 4 blocks
    faint = rule.active_blocks(_excess_input(256, 200, [(10, 10)], z=5.0))[0]
    assert not faint.any()  # one pixel at 5 sigma: noise, not a spot
    x_wide = _excess_input(256, 200, [], z=0.0)
    x_wide[0, 1, 100:103, 100:103] = float(np.arcsinh(3.0 / 2) / 3)  # 3x3 px at 3 sigma
    assert rule.active_blocks(x_wide)[0, 1, 1]


def test_candidate_tiles_equal_the_whole_frame_where_spots_can_be():
    from xrd_bluesky_mask.models.network import NetworkConfig, build_network

    torch.manual_seed(1)
    net = build_network(NetworkConfig(depth=3, base_channels=4)).eval()
    x = _excess_input(320, 384, [(40, 50), (300, 370)], z=30.0)
    rule = CandidateRule(block=64, reach=8)
    with torch.inference_mode():
        whole = HaloPredictor(tile=128, halo=64, multiple=4)(x, net)
        skipping = HaloPredictor(tile=128, halo=64, multiple=4, candidates=rule)
        out = skipping(x, net)
    ran = torch.zeros(320, 384, dtype=torch.bool)
    ran[0:64, 0:64] = True  # the active block of the first tile
    ran[256:320, 320:384] = True
    np.testing.assert_allclose(out[0, :, ran].numpy(), whole[0, :, ran].numpy(), atol=1e-4)
    assert (out[0, 0, ~ran] == 0).all() and (out[0, 1, ~ran] == SKIPPED_LOGIT).all()
    assert skipping.coverage == pytest.approx(ran.float().mean().item())
    assert "candidates" in skipping.settings()
    with torch.inference_mode():
        none = skipping(_excess_input(320, 384, [], z=0.0), net)
    assert skipping.coverage == 0.0 and (none[:, 1] == SKIPPED_LOGIT).all()
