"""Starting a narrower U-Net from a trained one's most important channels."""

from __future__ import annotations

import pytest
import torch

from xrd_bluesky_mask.models import load_model
from xrd_bluesky_mask.models.network import NetworkConfig, build_network
from xrd_bluesky_mask.training import TrainConfig, train
from xrd_bluesky_mask.training.loop import predict_tiles
from xrd_bluesky_mask.training.prune import prune_into

from .test_training import TINY, _toy_tiles


def _teacher(cfg: NetworkConfig) -> torch.nn.Module:
    torch.manual_seed(1)
    net = build_network(cfg)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(-1.5, 1.5)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_a_student_as_wide_as_the_teacher_is_a_copy():
    cfg = NetworkConfig(depth=3, base_channels=4)
    teacher = _teacher(cfg)
    student = prune_into(teacher, build_network(cfg)).eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(student(x), teacher(x), rtol=1e-5, atol=1e-5)


def test_half_width_keeps_the_largest_gammas_and_wires_them_through():
    teacher = _teacher(NetworkConfig(depth=3, base_channels=8))
    student = prune_into(teacher, build_network(NetworkConfig(depth=3, base_channels=4))).eval()
    gamma = teacher.Encode_0[1].weight.detach().abs()
    kept = torch.sort(torch.topk(gamma, 4).indices).values
    torch.testing.assert_close(student.Encode_0[0].weight, teacher.Encode_0[0].weight[kept])
    torch.testing.assert_close(student.Encode_0[1].running_var,
                               teacher.Encode_0[1].running_var[kept])
    with torch.inference_mode():
        assert student(torch.randn(1, 4, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(ValueError, match="depths differ"):
        prune_into(teacher, build_network(NetworkConfig(depth=2, base_channels=4)))


def test_pruned_student_starts_closer_to_the_teacher_than_a_random_one(tmp_path):
    tiles = _toy_tiles()
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, architecture=TINY, target_tnr=0.99)
    teacher = load_model(train(tiles, tmp_path, cfg, progress=False).model_dir,
                         device="cpu").net.eval()
    target = predict_tiles(teacher, tiles.x, "cpu")
    narrow = NetworkConfig(depth=2, base_channels=2)
    torch.manual_seed(0)
    gaps = {}
    for name, net in (("random", build_network(narrow)),
                      ("pruned", prune_into(teacher, build_network(narrow)))):
        gaps[name] = float((predict_tiles(net.eval(), tiles.x, "cpu") - target).abs().mean())
    assert gaps["pruned"] < 0.7 * gaps["random"], gaps
