"""A narrower U-Net started from a trained one: keep each layer's most important channels.

`prune_into` copies into a student TUNet (same depth, at most as many channels per level) the
teacher's weights restricted to the channels that matter most: for a convolution followed by
batch norm, the largest ``|gamma|`` (network slimming, Liu et al. 2017); for the up-sampling
transposed convolutions, the largest L1 norm of the output channel's weights. Every layer then
reads exactly the channels its input layer kept, including the skip half of each decoder's
``cat(skip, up)``. A student as wide as the teacher becomes an exact copy. Distilling from the
teacher (`train(..., teacher=...)`) then starts from a network that already finds most spots,
instead of from random weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models.network import tunet_block, tunet_depth

if TYPE_CHECKING:
    import torch


def _pairs(block: torch.nn.Module) -> list[tuple[torch.nn.Conv2d, torch.nn.Module | None]]:
    """(Conv2d, the BatchNorm2d right after it or None) of a block, in order."""
    import torch

    mods = list(block._modules.values())
    return [(m, mods[j + 1] if j + 1 < len(mods) and isinstance(mods[j + 1],
                                                                torch.nn.BatchNorm2d) else None)
            for j, m in enumerate(mods) if isinstance(m, torch.nn.Conv2d)]


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    import torch

    if k >= score.numel():
        return torch.arange(score.numel())
    return torch.sort(torch.topk(score, k).indices).values


def _copy_conv(tc, tbn, sc, sbn, in_idx: torch.Tensor) -> torch.Tensor:
    """Copy the teacher conv (+BN) restricted to ``in_idx`` and its best outputs; return them."""
    score = tbn.weight.detach().abs() if tbn is not None else \
        tc.weight.detach().abs().sum(dim=(1, 2, 3))
    out_idx = _top(score, sc.out_channels)
    sc.weight.data.copy_(tc.weight.data[out_idx][:, in_idx])
    if sc.bias is not None:
        sc.bias.data.copy_(tc.bias.data[out_idx])
    if sbn is not None and tbn is not None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(sbn, name).data.copy_(getattr(tbn, name).data[out_idx])
    return out_idx


def _step_up(net: torch.nn.Module, level: int) -> torch.nn.ConvTranspose2d:
    import torch

    up = tunet_block(net, "step_up", level)
    if not isinstance(up, torch.nn.ConvTranspose2d):
        raise ValueError(f"step up {level} is a {type(up).__name__}, not a ConvTranspose2d")
    return up


def prune_into(teacher: torch.nn.Module, student: torch.nn.Module) -> torch.nn.Module:
    """Fill ``student`` (a dlsia TUNet, modified in place and returned) from ``teacher``.

    Both must have the same depth, input and output channels; each student layer may have at
    most as many channels as the teacher's.
    """
    import torch

    depth, student_depth = tunet_depth(teacher), tunet_depth(student)
    if depth != student_depth:
        raise ValueError(f"depths differ: teacher {depth}, student {student_depth}")

    with torch.no_grad():
        idx = torch.arange(_pairs(tunet_block(teacher, "encoders", 0))[0][0].in_channels)
        skips = []
        for i in range(depth):
            t_pairs, s_pairs = _pairs(tunet_block(teacher, "encoders", i)), \
                _pairs(tunet_block(student, "encoders", i))
            for (tc, tbn), (sc, sbn) in zip(t_pairs, s_pairs, strict=True):
                idx = _copy_conv(tc, tbn, sc, sbn, idx)
            skips.append(idx)
        for i in range(depth - 2, -1, -1):
            tu, su = _step_up(teacher, i), _step_up(student, i)
            up_idx = _top(tu.weight.detach().abs().sum(dim=(0, 2, 3)), su.out_channels)
            su.weight.data.copy_(tu.weight.data[idx][:, up_idx])
            if su.bias is not None and tu.bias is not None:
                su.bias.data.copy_(tu.bias.data[up_idx])
            n_skip = _pairs(tunet_block(teacher, "encoders", i))[-1][0].out_channels
            idx = torch.cat([skips[i], n_skip + up_idx])
            t_pairs, s_pairs = _pairs(tunet_block(teacher, "decoders", i)), \
                _pairs(tunet_block(student, "decoders", i))
            for (tc, tbn), (sc, sbn) in zip(t_pairs, s_pairs, strict=True):
                idx = _copy_conv(tc, tbn, sc, sbn, idx)
    return student
