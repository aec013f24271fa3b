"""The dlsia U-Net: building it from a config, and choosing the device it runs on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


#: The network's input channels, in order (built by `masking.preprocess.network_input`);
#: stored in model cards so a model and its input stay matched.
CHANNELS = ("log_frame", "ring_excess", "sector_excess", "opposite_sector_excess")
#: An optional channel after the four: ``ring_excess`` against rings of a second, coarser width (a
#: model card's ``input.coarse_ring_bin_px``). Fine rings keep sharp rings and bright grains out
#: of the excess; coarse rings keep a low-count ring's median and spread from being noise.
COARSE_RING_CHANNEL = "coarse_ring_excess"
#: The optional last channel: the ring excess through matched filters (Gaussians of a card's
#: ``input.blob_sigmas_px``), the largest signal-to-noise ratio of the scales: a faint spot
#: several pixels wide is a small excess in each pixel and a large one summed over its area.
BLOB_CHANNEL = "blob_excess"
#: Version of how those channels are computed; a card of another version is refused.
NORMALISATION_VERSION = 2


def channel_names(coarse_ring_bin_px: float | None = None,
                  blob_sigmas_px: tuple[float, ...] | list[float] = ()) -> tuple[str, ...]:
    """The input channels, in order: the four, then the coarse ring channel and the blob
    channel when asked for."""
    return (*CHANNELS, *([COARSE_RING_CHANNEL] if coarse_ring_bin_px is not None else []),
            *([BLOB_CHANNEL] if blob_sigmas_px else []))


class NetworkConfig(BaseModel):
    """Hyper-parameters of dlsia's TUNet (the paper's network is depth 4, 8 base, growth 2)."""

    model_config = ConfigDict(extra="forbid")

    in_channels: int = Field(default=4, ge=1, description="input channels (see channel_names)")
    out_channels: int = Field(default=2, ge=2, description="classes: 0 = not a spot, 1 = spot")
    depth: int = Field(default=4, ge=2, le=6, description="levels of the U (max-pool steps + 1)")
    base_channels: int = Field(default=8, ge=1, description="feature maps at full resolution")
    growth_rate: float = Field(default=2, gt=0, description="feature-map growth per level")
    hidden_rate: float = Field(default=1, gt=0, description="hidden-layer width factor")

    @property
    def size_multiple(self) -> int:
        """Input height/width must be a multiple of this many pixels (2**(depth-1))."""
        return 2 ** (self.depth - 1)


def build_network(config: NetworkConfig | None = None) -> torch.nn.Module:
    """A fresh dlsia TUNet for ``config`` (logits out, no final activation)."""
    try:
        from dlsia.core.networks.tunet import TUNet
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError(
            f"dlsia is not importable ({exc}). Install it without its heavy extras: "
            "`pip install --no-deps dlsia==0.3.4 qlty==1.5.0` (see README, Install)."
        ) from exc
    cfg = config or NetworkConfig()
    return TUNet(
        image_shape=(256, 256),
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        depth=cfg.depth,
        base_channels=cfg.base_channels,
        # dlsia leaves these unannotated (read as int from the defaults); it scales by floats
        growth_rate=cfg.growth_rate,  # pyright: ignore[reportArgumentType]
        hidden_rate=cfg.hidden_rate,  # pyright: ignore[reportArgumentType]
    )


class _TUNetLayout(Protocol):
    depth: int
    encoders: dict[int, str]
    decoders: dict[int, str]
    step_down: dict[int, str]
    step_up: dict[int, str]


def tunet_depth(net: torch.nn.Module) -> int:
    """Levels of a dlsia TUNet (``net.depth``)."""
    # a plain attribute of TUNet, which torch's Module.__getattr__ types as Tensor | Module
    return cast(_TUNetLayout, net).depth


def tunet_block(net: torch.nn.Module,
                kind: Literal["encoders", "decoders", "step_down", "step_up"],
                level: int) -> torch.nn.Module:
    """The ``kind`` block of a dlsia TUNet at ``level`` (TUNet keeps each kind's submodule
    names in a dict by level)."""
    return net.get_submodule(getattr(cast(_TUNetLayout, net), kind)[level])


def select_device(preferred: str | None = None) -> torch.device:
    """The device to run on: ``preferred`` if given, else CUDA when a probe allocation works.

    The probe allocates a small tensor before trusting the GPU (a visible but unusable GPU
    falls back to the CPU with a log line).
    """
    import torch

    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        try:
            torch.zeros(8, device="cuda").sum().item()
            log.info("using GPU %s", torch.cuda.get_device_name(0))
            return torch.device("cuda")
        except Exception as exc:  # a broken driver or a full GPU
            log.warning("CUDA is visible but unusable (%s); using the CPU", exc)
    return torch.device("cpu")


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` (eval mode) with each Conv2d→BatchNorm2d pair fused into one Conv2d.

    Same outputs (to float rounding) as the eval-mode network; one pass less over every
    feature map, which matters on CPU where inference is memory-bound.
    """
    import copy

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(net).eval()
    for seq in folded.modules():
        if not isinstance(seq, torch.nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = torch.nn.Identity()
    return folded
