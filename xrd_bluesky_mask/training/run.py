"""`xrd-mask train`: simulate training frames, cut tiles, train, keep the best epoch."""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ..models.card import InputSpec
from .dataset import TileSet
from .loop import TrainConfig, TrainResult, train
from .simulated import simulated_tiles

if TYPE_CHECKING:
    import torch


def train_from_args(args: argparse.Namespace, argv: list[str] | None) -> TrainResult:
    """Run the ``train`` subcommand; logs to ``OUT/train.log`` as well as the console."""
    import sys

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("xrd_bluesky_mask").addHandler(handler)
    logging.getLogger("xrd_bluesky_mask").setLevel(logging.INFO)
    command = "xrd-mask " + shlex.join(argv if argv is not None else sys.argv[1:])
    data: dict
    spec = input_spec(args)
    if args.images:
        from ..errors import FrameError
        from .files import tiles_from_files

        if not args.masks or args.poni is None:
            raise FrameError("training on --images needs --masks (one per image) and --poni")
        tiles = tiles_from_files(args.images, args.masks, args.poni, seed=args.seed,
                                 spec=spec)
        data = {"source": "files", "images": [str(p) for p in args.images],
                "masks": [str(p) for p in args.masks], "poni": str(args.poni)}
    else:
        scenes = getattr(args, "scenes", "v2")
        tiles = _cached_tiles(out, args.frames, args.size, args.seed, scenes, spec)
        data = {"source": "simulator", "frames": args.frames, "shape_px": [args.size, args.size],
                "seed": args.seed, "scene_set": scenes,
                "scenes": f"simulate.random_scene(scenes={scenes!r}), all "
                "styles, phases except simulate.presets.HELD_OUT_PHASES"}
    from ..errors import ModelError
    from ..models.network import CHANNELS, NetworkConfig, build_network
    from ..models.store import load_model

    prune = getattr(args, "prune_teacher", False)
    if prune and getattr(args, "teacher", None) is None:
        raise ModelError("--prune-teacher needs --teacher MODEL")
    if prune and args.init is not None:
        raise ModelError("--prune-teacher starts from the teacher; leave out --init")
    shape = {k: v for k in ("depth", "base_channels", "growth_rate")
             if (v := getattr(args, k, None)) is not None}
    architecture = NetworkConfig(**shape, in_channels=len(spec.expected_channels))
    init_state, parent, decision = None, None, None
    if args.init is not None:
        base = load_model(args.init, device="cpu")
        # the base model's decision step travels with its weights, as in retraining
        init_state, parent, decision = (base.net.state_dict(), base.card.model_id,
                                        base.card.decision)
        if shape and base.card.architecture.model_copy(update=shape) != base.card.architecture:
            raise ModelError(f"--init {args.init} has architecture "
                             f"{base.card.architecture.model_dump()}; fine-tuning keeps it, so "
                             "leave out --depth/--base-channels/--growth-rate (or drop --init)")
        have = base.card.input.expected_channels
        if spec.expected_channels[: len(have)] != have:
            raise ModelError(f"--init {args.init} reads the input channels {list(have)}; "
                             "fine-tuning keeps them and may add channels after them, not "
                             f"{list(spec.expected_channels)}")
        architecture = base.card.architecture.model_copy(update={
            "in_channels": len(spec.expected_channels)})
        share = (CHANNELS.index("ring_excess")
                 if getattr(args, "coarse_init", "zero") == "ring" else None)
        init_state = widen_input(init_state, build_network(architecture).state_dict(),
                                 share=share)
    teacher = None
    if getattr(args, "teacher", None) is not None:
        loaded = load_model(args.teacher, device="cpu")
        teacher = loaded.net.eval()
        data["teacher"] = {"model_id": loaded.card.model_id, "sha256": loaded.card.sha256,
                           "distill_weight": args.distill_weight}
        if prune:
            from .prune import prune_into

            # the teacher's shape, narrowed by the flags given
            architecture = loaded.card.architecture.model_copy(update=shape)
            if architecture.depth != loaded.card.architecture.depth:
                raise ModelError(f"--prune-teacher keeps the teacher's depth "
                                 f"({loaded.card.architecture.depth}); drop --depth")
            init_state = prune_into(teacher, build_network(architecture)).state_dict()
            data["teacher"]["init"] = "pruned: each layer's most important channels"
    logging.getLogger(__name__).info("%d tiles, %.4f mean spot fraction", len(tiles),
                                     float(tiles.spot_fraction.mean()))
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        lr_schedule=args.lr_schedule,
        class_weights=(1.0, args.spot_weight), max_minutes=args.max_minutes, device=args.device,
        architecture=architecture, distill_weight=getattr(args, "distill_weight", 1.0),
        input=spec,
        precision=getattr(args, "precision", "fp32"),
        hard_fraction=getattr(args, "hard_fraction", 0.0),
        hard_errors=("false_positives" if getattr(args, "hard_errors", "all")
                     == "false-positives" else "all"),
    )
    result = train(
        tiles, out, cfg, model_id=args.model_id, resume=not args.no_resume,
        init_state=init_state, parent=parent, teacher=teacher, decision=decision,
        card_extra={"command": command, "data": data},
    )
    val = result.card.metrics["val"]
    print(f"best model: {result.model_dir} (val recall {val['val_recall']:.4f} at TNR "
          f"{val['val_tnr']:.4f}, threshold {result.card.threshold:.3f})")
    return result


def input_spec(args: argparse.Namespace) -> InputSpec:
    """The network input to train on: ring widths and matched-filter widths from
    ``--ring-bin-px``, ``--coarse-ring-bin-px`` and ``--blob-sigmas-px``, else the ``--init``
    model's (fine-tuning keeps its input), else 2 px rings and the four channels."""
    base = InputSpec()
    if getattr(args, "init", None) is not None:
        from ..models.store import read_card

        base = read_card(args.init).input
    fine = getattr(args, "ring_bin_px", None)
    coarse = getattr(args, "coarse_ring_bin_px", None)
    blob = getattr(args, "blob_sigmas_px", None)
    return InputSpec(
        ring_bin_px=base.ring_bin_px if fine is None else float(fine),
        coarse_ring_bin_px=base.coarse_ring_bin_px if coarse is None else float(coarse),
        blob_sigmas_px=base.blob_sigmas_px if blob is None else [float(s) for s in blob])


def widen_input(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *,
                share: int | None = None) -> dict[str, torch.Tensor]:
    """``state`` (a trained network's weights) for a network with more input channels
    (``target``'s shapes). Each weight that reads the input gets, for the new channels, zero
    weights (``share`` None: the wider network computes what the trained one did, and learns
    what the new channels add), or an equal share of input channel ``share``'s weights, which
    keeps one share (half each for one new channel: where the new channels equal channel
    ``share``, the output is the trained one's; where they differ, the network starts from
    their mean). Other shapes must match."""
    import torch

    out = {}
    for key, value in state.items():
        want = target[key].shape
        if value.shape == want:
            out[key] = value
        elif (value.ndim >= 2 and value.shape[0] == want[0] and value.shape[2:] == want[2:]
              and value.shape[1] < want[1]):
            extra = want[1] - value.shape[1]
            if share is None:
                pad = torch.zeros((want[0], extra, *want[2:]), dtype=value.dtype)
            else:
                value = value.clone()
                value[:, share] /= extra + 1
                pad = value[:, share : share + 1].repeat(1, extra, *[1] * (value.ndim - 2))
            out[key] = torch.cat([value, pad], dim=1)
        else:
            raise ValueError(f"weights {key}: shape {tuple(value.shape)} cannot start a network "
                             f"whose {key} has shape {tuple(want)}")
    return out


def _cached_tiles(out: Path, frames: int, size: int, seed: int, scenes: str = "v2",
                  spec: InputSpec | None = None) -> TileSet:
    """Simulated tiles, kept in
    ``out/tiles-<frames>-<size>-<seed>[-v3][-bin0.5][-coarse2][-blob1_2_4].pt`` so a resumed
    run does not simulate again (the simulation is deterministic, so this only
    saves time)."""
    import torch

    spec = spec or InputSpec()
    suffix = (("" if scenes == "v2" else f"-{scenes}")
              + ("" if spec.ring_bin_px == 2.0 else f"-bin{spec.ring_bin_px:g}")
              + ("" if spec.coarse_ring_bin_px is None
                 else f"-coarse{spec.coarse_ring_bin_px:g}")
              + ("" if not spec.blob_sigmas_px
                 else "-blob" + "_".join(f"{s:g}" for s in spec.blob_sigmas_px)))
    cache = out / f"tiles-{frames}-{size}-{seed}{suffix}.pt"
    if cache.exists():
        data = torch.load(cache, weights_only=True)
        return TileSet(data["x"].to(torch.float16), data["y"])  # caches of float32 tiles too
    tiles = simulated_tiles(frames, shape=(size, size), seed=seed, scenes=scenes, spec=spec)
    torch.save({"x": tiles.x, "y": tiles.y}, cache)
    return tiles
