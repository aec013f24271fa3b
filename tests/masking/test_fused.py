"""The fused CPU plan of the dlsia TUNet: same logits as the module, and where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrd_bluesky_mask.masking.fused import FusedTUNet, fuse_tunet
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.models import load_model
from xrd_bluesky_mask.models.network import NetworkConfig, build_network, fold_batchnorm

from .frames import ring_frame


def _trained_like(cfg: NetworkConfig, seed: int = 0) -> torch.nn.Module:
    """A TUNet with random weights and non-trivial batch-norm statistics, folded."""
    torch.manual_seed(seed)
    net = build_network(cfg)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return fold_batchnorm(net.to(memory_format=torch.channels_last).eval())


@pytest.mark.parametrize("cfg", [NetworkConfig(), NetworkConfig(depth=2, base_channels=4),
                                 NetworkConfig(depth=5, base_channels=4, growth_rate=1.5)])
def test_plan_gives_the_modules_logits(cfg):
    net = _trained_like(cfg)
    plan = fuse_tunet(net)
    assert isinstance(plan, FusedTUNet)
    m = cfg.size_multiple
    x = torch.randn(2, 4, 12 * m, 9 * m).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref, out = net(x), plan(x)
    assert out.shape == ref.shape == (2, 2, 12 * m, 9 * m)
    scale = float(ref.abs().max())
    assert float((out - ref).abs().max()) <= 1e-4 * max(scale, 1.0)


def test_packaged_model_masks_are_identical():
    fused = UNetMasker(engine="fused")
    module = UNetMasker(engine="module")
    assert fused.engine == "fused" and module.engine == "module"
    assert fused.settings()["engine"] == "fused"
    g = np.random.default_rng(3)
    x = g.normal(0, 1, size=(4, 200, 328)).astype(np.float32)
    x[1] += (g.random((200, 328)) < 0.01) * 4.0  # some spot-like excursions
    p_fused, _ = fused.probability(x)
    p_module, _ = module.probability(x)
    np.testing.assert_allclose(p_fused, p_module, atol=1e-5)
    assert ((p_fused >= fused.threshold) == (p_module >= module.threshold)).mean() >= 0.9999


def test_masker_predicts_the_same_mask_with_either_engine(tiny_model_dir, small_geometry, rng):
    frame, _ = ring_frame(small_geometry, rng, spots=[(80, 90, 2.0, 4000.0)])
    a = UNetMasker(tiny_model_dir, engine="fused").predict(frame, small_geometry)
    b = UNetMasker(tiny_model_dir, engine="module").predict(frame, small_geometry)
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)


def test_plan_declines_what_it_cannot_run(tiny_model_dir):
    unfolded = build_network(NetworkConfig(depth=2, base_channels=4)).eval()
    assert fuse_tunet(unfolded) is None  # batch norms not folded into the convolutions
    assert fuse_tunet(torch.nn.Conv2d(4, 2, 3)) is None  # not a TUNet
    with pytest.raises(ValueError, match="engine"):
        UNetMasker(tiny_model_dir, engine="onnx")
    loaded = load_model(tiny_model_dir, device="cpu")
    assert fuse_tunet(fold_batchnorm(loaded.net)) is not None
