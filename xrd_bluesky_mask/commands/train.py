"""``xrd-mask train``: train or fine-tune a U-Net on simulated frames or image+mask files.

The defaults of the training and network options are those of `TrainConfig` and
`NetworkConfig`, read from them (one source of truth): the options default to None ("not
given"), ``--help`` shows the config's value and `run` fills it in. ``TrainConfig`` is read only
then, since importing it imports torch, which ``xrd-mask --help`` should not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ORDER = 2

#: Option (argparse dest) → (config, field[, index in a tuple field]) that holds its default.
FROM_CONFIG: dict[str, tuple[Any, ...]] = {
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "lr_schedule": ("train", "lr_schedule"),
    "spot_weight": ("train", "class_weights", 1),
    "seed": ("train", "seed"),
    "max_minutes": ("train", "max_minutes"),
    "distill_weight": ("train", "distill_weight"),
    "depth": ("network", "depth"),
    "base_channels": ("network", "base_channels"),
    "growth_rate": ("network", "growth_rate"),
}
#: Options that only show their config default: None tells `train_from_args` that they were
#: not given (an ``--init`` or ``--teacher`` model's architecture is kept then).
SHOWN_ONLY = ("depth", "base_channels", "growth_rate")


def config_defaults() -> dict[str, Any]:
    """The default of each option in `FROM_CONFIG`, from `TrainConfig` / `NetworkConfig`."""
    from ..models.network import NetworkConfig
    from ..training.loop import TrainConfig

    models = {"train": TrainConfig, "network": NetworkConfig}
    out = {}
    for dest, (model, field, *index) in FROM_CONFIG.items():
        value = models[model].model_fields[field].default
        out[dest] = value[index[0]] if index else value
    return out


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: ...)`` after every option's help: the config's value for `FROM_CONFIG`
    options, argparse's default for the others that have one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.dest in FROM_CONFIG:
            value = config_defaults()[action.dest]
            shown = "no limit" if value is None else f"{value:g}" if isinstance(
                value, float) else str(value)
            return f"{text} (default: {shown})"
        if action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help="train a U-Net on simulated frames or image+mask files",
                       formatter_class=_DefaultsFormatter)
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, best/)")
    t.add_argument("--images", nargs="+", type=Path, default=None,
                   help="train on these frames instead of simulated ones (needs --masks, --poni)")
    t.add_argument("--masks", nargs="+", type=Path, default=None,
                   help="label masks for --images (0 = no spot, 1 = spot, other = ignore)")
    t.add_argument("--poni", type=Path, default=None, help="PONI of the --images detector")
    t.add_argument("--init", type=Path, default=None,
                   help="fine-tune from this model folder instead of a fresh network")
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="training arithmetic: bf16 autocast of the forward pass (master weights "
                   "fp32) is faster where the CPU has native bf16; measure it with "
                   "benchmarks/bench_training.py before a long run (default fp32)")
    t.add_argument("--hard-fraction", type=float, default=0.0,
                   help="share of each epoch's tiles drawn where the --init network is wrong "
                   "(faint spots it misses, texture and bands it masks), in proportion to its "
                   "wrong pixels; the rest once each at random (default 0: uniform)")
    t.add_argument("--hard-errors", choices=["all", "false-positives"], default="all",
                   help="with --hard-fraction: which wrong pixels make a tile hard, all (missed "
                   "and false, the default) or the false spot pixels only (texture, bands, "
                   "rings the --init network masks: hard negatives)")
    t.add_argument("--ring-bin-px", type=float, default=None,
                   help="width of the 2θ rings of the ring-excess input channel, px of radius: "
                   "finer than the narrowest ring keeps sharp rings and grainy texture out of "
                   "it (default: the --init model's, else 2)")
    t.add_argument("--coarse-ring-bin-px", type=float, default=None,
                   help="add an input channel after the four, the ring excess against rings "
                   "this wide, px of radius (e.g. 2 beside --ring-bin-px 0.5: coarse rings "
                   "read low-count rings, fine ones sharp rings). With --init a model "
                   "without it starts with zero weights on it (default: the --init model's, "
                   "else none)")
    t.add_argument("--blob-sigmas-px", type=float, nargs="+", default=None,
                   help="add a last input channel, blob_excess: the ring excess through "
                   "Gaussian matched filters of these widths (sigma, px; e.g. 1 2 4), so faint "
                   "spots several pixels wide stand out; with --init a model without it starts "
                   "with zero weights on it (default: the --init model's, else none)")
    t.add_argument("--coarse-init", choices=["zero", "ring"], default="zero",
                   help="with --coarse-ring-bin-px and an --init model without it: the new "
                   "channels start with zero weights (unused; the network is its parent), or share "
                   "ring_excess's weights equally with it")
    t.add_argument("--teacher", type=Path, default=None,
                   help="distil this trained model folder: its spot probability joins the "
                   "labels in the loss (to train a lighter network)")
    t.add_argument("--prune-teacher", action="store_true",
                   help="start from the teacher's most important channels (network slimming) "
                   "instead of random weights; needs --teacher")
    t.add_argument("--distill-weight", type=float, default=None,
                   help="weight of the teacher term")
    t.add_argument("--depth", type=int, default=None,
                   help="U-Net levels; if not given, an --init or --teacher model's own")
    t.add_argument("--base-channels", type=int, default=None,
                   help="feature maps at full resolution; if not given, an --init or --teacher "
                   "model's own")
    t.add_argument("--growth-rate", type=float, default=None,
                   help="feature-map growth per level; if not given, an --init or --teacher "
                   "model's own")
    t.add_argument("--frames", type=int, default=32, help="simulated frames")
    t.add_argument("--size", type=int, default=1024, help="simulated frame size, px")
    t.add_argument("--scenes", default="v2", choices=["v2", "v3", "v4"],
                   help="simulated scene set: v2 (the first models'), v3 (long streaks, "
                   "heavy tails, edges, extreme pixels, beamstop rims, other shapes) or v4 "
                   "(v3 plus faint spots on bright and grainy rings, integer counts, spot-free "
                   "sharp, oriented and grainy rings)")
    t.add_argument("--seed", type=int, default=None,
                   help="seed of the simulation, the split and the augmentation")
    t.add_argument("--epochs", type=int, default=None, help="training epochs")
    t.add_argument("--batch-size", type=int, default=None, help="tiles per optimiser step")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (paper: 1e-2)")
    t.add_argument("--lr-schedule", default=None, choices=["constant", "cosine"],
                   help="constant (the paper) or cosine decay to lr/100")
    t.add_argument("--spot-weight", type=float, default=None,
                   help="cross-entropy weight of the spot class")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    t.add_argument("--model-id", default="xrdmask-unet", help="the model card's id")
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--device", default=None,
                   help="torch device, e.g. cpu or cuda:0 (default: a GPU if one works)")
    return t


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..training.run import train_from_args

    for dest, value in config_defaults().items():
        if getattr(args, dest, None) is None and dest not in SHOWN_ONLY:
            setattr(args, dest, value)
    train_from_args(args, argv)
    return 0
