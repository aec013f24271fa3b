"""`FusedTUNet`: a CPU inference plan of a dlsia TUNet with fewer passes over memory.

On a CPU the U-Net's small feature maps (8 channels at full resolution) make inference
memory-bound: in the eager module a quarter of the time went to ``torch.cat`` (interleaving
channels-last maps) and a sixth to separate ReLU passes. This plan runs the same weights with
oneDNN's fused operators instead:

- each Conv2d→ReLU pair is one convolution with a ReLU post-op;
- each decoder's first convolution over ``cat(skip, up)`` is split by input channels into
  ``conv(skip, W_skip) + conv(up, W_up)``, the sum and ReLU fused into the second convolution,
  so the concatenated map is never built.

Same logits as the module to float rounding (tested to 1e-4). Build it with `fuse_tunet`,
which returns None where the plan does not apply (not a CPU, no oneDNN, an unknown layer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..models.network import tunet_block, tunet_depth

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Conv:
    weight: Any  # torch.Tensor, channels-last
    bias: Any
    padding: list[int]
    stride: list[int]
    dilation: list[int]
    groups: int
    relu: bool


def _conv(module: torch.nn.Conv2d, relu: bool, weight: Any = None, bias: Any = True) -> _Conv:
    import torch

    assert not isinstance(module.padding, str)  # "same"/"valid" blocks are refused by _plan
    w = module.weight.detach() if weight is None else weight
    b = (module.bias.detach() if module.bias is not None else None) if bias is True else bias
    return _Conv(w.contiguous(memory_format=torch.channels_last), b, list(module.padding),
                 list(module.stride), list(module.dilation), module.groups, relu)


def _plan(seq: torch.nn.Module) -> list[_Conv] | None:
    """Conv(+ReLU) steps of one encoder/decoder block, or None if it holds anything else."""
    import torch

    # not seq.children(): it skips repeats, and dlsia reuses one ReLU module within a block
    mods = [m for m in seq._modules.values() if not isinstance(m, torch.nn.Identity)]
    steps, i = [], 0
    while i < len(mods):
        conv = mods[i]
        if not isinstance(conv, torch.nn.Conv2d) or conv.padding_mode != "zeros" or \
                isinstance(conv.padding, str):
            return None
        relu = i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.ReLU)
        steps.append(_conv(conv, relu))
        i += 2 if relu else 1
    return steps


class FusedTUNet:
    """Callable like the network: ``plan(x) -> logits`` for CPU ``x`` (cast to the weights'
    dtype, channels-last).

    Built by `fuse_tunet` from a TUNet whose batch norms are folded (`fold_batchnorm`); a
    network cast to bfloat16 gives a bf16 plan (oneDNN's bf16 kernels need AVX-512 or
    AVX-NE-CONVERT, elsewhere the first call raises a RuntimeError).
    """

    def __init__(self, encoders: list[list[_Conv]], decoders: list[tuple[_Conv, _Conv,
                 list[_Conv]]], step_down: list[Any], step_up: list[Any]) -> None:
        self.encoders, self.decoders = encoders, decoders
        self.step_down, self.step_up = step_down, step_up
        #: the weights' dtype (float32, or bfloat16 for a plan of a bf16 network)
        self.dtype = encoders[0][0].weight.dtype

    @staticmethod
    def _run(x: torch.Tensor, steps: list[_Conv]) -> torch.Tensor:
        import torch

        op = torch.ops.mkldnn._convolution_pointwise
        for s in steps:
            x = op(x, s.weight, s.bias, s.padding, s.stride, s.dilation, s.groups,
                   "relu" if s.relu else "none", [], "")
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        binary = torch.ops.mkldnn._convolution_pointwise.binary
        with torch.no_grad():
            x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
            skips = []
            for steps, down in zip(self.encoders[:-1], self.step_down, strict=True):
                x = self._run(x, steps)
                skips.append(x)
                x = down(x)
            x = self._run(x, self.encoders[-1])
            for level in range(len(self.decoders) - 1, -1, -1):
                skip_conv, up_conv, rest = self.decoders[level]
                up = self.step_up[level](x)
                partial = self._run(skips[level], [skip_conv])
                skips[level] = None  # free the skip map before the next level
                x = binary(up, partial, up_conv.weight, None, up_conv.padding, up_conv.stride,
                           up_conv.dilation, up_conv.groups, "add", None,
                           "relu" if up_conv.relu else None, [], "")
                x = self._run(x, rest)
            return x


def fuse_tunet(net: torch.nn.Module) -> FusedTUNet | None:
    """The fused CPU plan of a batch-norm-folded dlsia TUNet, or None where it does not apply.

    None (with a debug log line) when ``net`` is not on the CPU, this torch has no oneDNN
    fused convolution, the network has a final activation, or a block holds a layer other
    than Conv2d/ReLU/Identity (an unfolded batch norm, dropout...).
    """
    import torch

    def no(why: str) -> None:
        log.debug("fused TUNet plan not used: %s", why)

    try:
        if next(net.parameters()).device.type != "cpu":
            return no("the network is not on the CPU")
    except StopIteration:
        return no("the network has no parameters")
    if not (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return no("this torch build has no oneDNN fused convolution")
    needed = ("depth", "encoders", "decoders", "step_up", "step_down")
    if not all(hasattr(net, a) for a in needed) or getattr(net, "final_activation", None):
        return no("not a dlsia TUNet without final activation")
    depth = tunet_depth(net)
    plans = [_plan(tunet_block(net, "encoders", i)) for i in range(depth)] + \
        [_plan(tunet_block(net, "decoders", i)) for i in range(depth - 1)]
    usable = [p for p in plans if p]
    if len(usable) < len(plans):
        return no("a block holds a layer other than Conv2d/ReLU")
    encoders, blocks = usable[:depth], usable[depth:]
    decoders = []
    for i, steps in enumerate(blocks):
        block = tunet_block(net, "decoders", i)
        first = block[0] if isinstance(block, torch.nn.Sequential) else None
        if not isinstance(first, torch.nn.Conv2d):
            return no("a decoder block does not start with a Conv2d")
        n_skip = encoders[i][-1].weight.shape[0]
        w = first.weight.detach()
        if w.shape[1] <= n_skip:
            return no("a decoder's input is not cat(skip, up)")
        decoders.append((_conv(first, False, w[:, :n_skip]),
                         _conv(first, steps[0].relu, w[:, n_skip:], None), steps[1:]))
    downs = [tunet_block(net, "step_down", i) for i in range(depth - 1)]
    ups = [tunet_block(net, "step_up", i) for i in range(depth - 1)]
    return FusedTUNet(encoders, decoders, downs, ups)
