"""The training loop: class-weighted cross-entropy, Adam, dihedral augmentation, checkpoints.

With a ``teacher`` (a trained, usually larger network) the loss adds a distillation term: the
binary cross-entropy between the student's spot logit and the teacher's spot probability on
every labelled pixel, so a lighter network learns the teacher's answer, not only the labels.

`train` is a plain function the CLI, plans and notebooks all call. It checkpoints every epoch
(``checkpoint.pt``: tensors and JSON only, loaded with ``weights_only=True``) and resumes from
it (the learning-rate schedule, `lr_scheduler`, is a function of the epoch, so it needs no
state of its own), keeps the best epoch (validation recall at the target true-negative rate)
as a model folder with its card, and returns the evidence.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.optim.lr_scheduler import LambdaLR

from ..models.card import InputSpec, ModelCard
from ..models.network import NetworkConfig, build_network, select_device
from ..models.store import save_model
from ..progress import progress as tqdm
from .dataset import IGNORE, TileSet
from .operating_point import operating_point

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Training settings; the defaults are the paper's recipe (lr 1e-2, batch 50, Adam)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=50, ge=1)
    lr: float = Field(default=1e-2, gt=0, description="Adam learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        description="constant (the paper) or cosine decay to lr/100 over `epochs`"
    )
    class_weights: tuple[float, float] = Field(default=(1.0, 4.0),
                                               description="CE weight per class")
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    target_tnr: float = Field(default=0.998, gt=0.5, lt=1,
                              description="threshold chosen for this TNR")
    augment: bool = True
    seed: int = 0
    max_minutes: float | None = Field(default=None, gt=0,
                                      description="stop after this much wall time")
    architecture: NetworkConfig = Field(default_factory=NetworkConfig)
    distill_weight: float = Field(
        default=1.0, ge=0, description="weight of the teacher term (used only with a teacher)")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="forward pass in fp32, or under bf16 autocast (weights, optimiser and "
        "loss stay fp32): faster where the CPU has native bf16 (AVX512-BF16, AMX) or on a GPU")
    hard_fraction: float = Field(
        default=0.0, ge=0, le=1,
        description="share of each epoch's tiles drawn where the starting network is wrong "
        "(in proportion to its wrong pixels on the tile, with replacement), the rest once "
        "each at random; needs starting weights (--init). 0: every tile once per epoch")
    hard_errors: Literal["all", "false_positives"] = Field(
        default="all",
        description="what makes a tile hard: all the starting network's wrong pixels (missed "
        "spot pixels, which large spots dominate, and false ones), or its false spot pixels "
        "only (texture, bands and rings it masks: hard negatives)")
    input: InputSpec = Field(
        default_factory=InputSpec,
        description="the network input the tiles were made with: ring widths, channels "
        "(recorded in the card; inference builds the same). The architecture's in_channels "
        "must match its channels")
    device: str | None = None


@dataclass
class TrainResult:
    """Where the best model went and how training went."""

    model_dir: Path
    card: ModelCard
    history: list[dict[str, Any]] = field(default_factory=list)


def cosine_factor(epochs: int) -> Callable[[int], float]:
    """The ``cosine`` schedule's lr multiplier for epoch ``e`` (0-based): 1 at the first epoch,
    0.01 at the last, ``0.01 + 0.99 * (1 + cos(pi * e / (epochs - 1))) / 2`` between."""

    def factor(epoch: int) -> float:
        frac = epoch / max(epochs - 1, 1)
        # a Python float: a numpy scalar in the optimiser state makes checkpoint.pt unloadable
        # with weights_only=True
        return float(0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * frac)))

    return factor


def lr_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                 start_epoch: int = 0) -> LambdaLR | None:
    """The learning-rate schedule of ``cfg`` (None for ``constant``), already at epoch
    ``start_epoch`` (0-based): call ``step()`` after each epoch.

    The lr of epoch ``e`` is ``cfg.lr * cosine_factor(cfg.epochs)(e)`` whatever the optimiser
    state says, so a run resumed from ``checkpoint.pt`` (which holds no scheduler state, and
    from older versions no ``initial_lr``) continues the same sequence.
    """
    if cfg.lr_schedule == "constant":
        return None
    for group in opt.param_groups:
        group["initial_lr"] = cfg.lr
    return LambdaLR(opt, cosine_factor(cfg.epochs), last_epoch=start_epoch - 1)


def _augment(gen: torch.Generator, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One random rotation/flip of the last two axes, the same for every tensor."""
    k = int(torch.randint(0, 8, (1,), generator=gen))
    if k >= 4:
        tensors = tuple(torch.flip(t, dims=(-1,)) for t in tensors)
    return tuple(torch.rot90(t, k % 4, dims=(-2, -1)) for t in tensors)


def _distill_loss(logits: torch.Tensor, soft: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the spot logit (class 1 minus class 0) against the teacher's
    spot probability ``soft``, over pixels that carry a label."""
    keep = y != IGNORE
    margin = (logits[:, 1] - logits[:, 0])[keep]
    return torch.nn.functional.binary_cross_entropy_with_logits(margin, soft[keep].float())


@torch.inference_mode()
def predict_tiles(net: torch.nn.Module, x: torch.Tensor, device, batch: int = 32) -> torch.Tensor:
    """Spot probability ``(N, w, w)`` for tiles ``(N, C, w, w)``."""
    net.eval()
    if len(x) == 0:
        return torch.empty((0, *x.shape[2:]))
    out = [
        torch.softmax(
            net(x[i : i + batch].to(device, torch.float32)
                .contiguous(memory_format=torch.channels_last)).float(),
            dim=1,
        )[:, 1].cpu()
        for i in range(0, len(x), batch)
    ]
    return torch.cat(out)


def _resume(ckpt: Path, net: torch.nn.Module, opt: torch.optim.Optimizer,
            device: torch.device, log_level: int = logging.INFO) -> list[dict[str, Any]]:
    """Load weights and optimiser state from ``ckpt``; the epochs' history it holds."""
    from numpy._core.multiarray import scalar

    # checkpoints written before the lr fix hold numpy float64 learning rates: allow exactly
    # those data types, nothing that can run code
    with torch.serialization.safe_globals([scalar, np.dtype, np.dtypes.Float64DType]):
        state = torch.load(ckpt, map_location=device, weights_only=True)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optim"])
    history = json.loads(state["history"])
    log.log(log_level, "resuming from %s after epoch %d", ckpt, len(history))
    return history


def tile_errors(net: torch.nn.Module, tiles: TileSet, device, threshold: float = 0.5,
                kind: str = "all") -> torch.Tensor:
    """Wrong pixels (labelled pixels only) of ``net`` on every tile, float32 ``(N,)``: where a
    network is wrong, for drawing hard tiles. ``kind``: ``"all"`` counts missed and false spot
    pixels, ``"false_positives"`` only the false ones (powder the network masks)."""
    if kind not in ("all", "false_positives"):
        raise ValueError(f"tile error kind must be 'all' or 'false_positives', got {kind!r}")
    out = []
    for i in range(0, len(tiles), 256):  # a chunk at a time: no (N, w, w) probability image
        pred = predict_tiles(net, tiles.x[i : i + 256], device) >= threshold
        y = tiles.y[i : i + 256]
        truth = y == 1 if kind == "all" else torch.zeros_like(pred)
        wrong = (pred != truth) & (y != IGNORE)
        if kind == "false_positives":
            wrong &= y != 1
        out.append(wrong.flatten(1).sum(1).float())
    return torch.cat(out) if out else torch.zeros(0)


def epoch_order(n: int, gen: torch.Generator, errors: torch.Tensor | None,
                hard_fraction: float) -> torch.Tensor:
    """The tile indices of one epoch (``n`` of them): with ``errors``, a ``hard_fraction`` of
    them drawn in proportion to ``errors`` (with replacement) and the rest a random subset,
    shuffled together; without, a random permutation."""
    if errors is None or hard_fraction <= 0 or float(errors.sum()) <= 0:
        return torch.randperm(n, generator=gen)
    k = int(round(hard_fraction * n))
    hard = torch.multinomial(errors.double(), k, replacement=True, generator=gen)
    rest = torch.randperm(n, generator=gen)[: n - k]
    both = torch.cat([hard, rest])
    return both[torch.randperm(len(both), generator=gen)]


def _train_epoch(net: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: torch.nn.Module,
                 train_set: TileSet, soft: torch.Tensor | None, cfg: TrainConfig,
                 gen: torch.Generator, device: torch.device,
                 errors: torch.Tensor | None = None) -> list[float]:
    """One pass over ``train_set`` in random batches (hard tiles drawn more often when
    ``errors`` is given, `epoch_order`); the loss of each batch."""
    net.train()
    perm = epoch_order(len(train_set), gen, errors, cfg.hard_fraction)
    losses = []
    for i in range(0, len(perm), cfg.batch_size):
        idx = perm[i : i + cfg.batch_size]
        if len(idx) < 2:
            continue
        batch = [train_set.x[idx], train_set.y[idx]] + ([soft[idx]] if soft is not None else [])
        if cfg.augment:
            batch = list(_augment(gen, *batch))
        opt.zero_grad(set_to_none=True)
        xb = batch[0].to(device, torch.float32).contiguous(memory_format=torch.channels_last)
        yb = batch[1].to(device).long()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            logits = net(xb)
        logits = logits.float()
        loss = loss_fn(logits, yb)
        if soft is not None:
            loss = loss + cfg.distill_weight * _distill_loss(logits, batch[2].to(device), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _save_epoch(out: Path, net: torch.nn.Module, opt: torch.optim.Optimizer, card: ModelCard,
                history: list[dict[str, Any]], *, is_best: bool) -> None:
    """``last/`` (and ``best/`` when ``is_best``) model folders, then the checkpoint (written
    aside and renamed, so a kill never leaves half of one) and ``history.json``."""
    save_model(net, card, out / "last")  # the latest epoch, ready to calibrate or ship
    if is_best:
        save_model(net, card, out / "best")
    torch.save(
        {"model": net.state_dict(), "optim": opt.state_dict(), "history": json.dumps(history)},
        out / "checkpoint.tmp",
    )
    (out / "checkpoint.tmp").replace(out / "checkpoint.pt")
    (out / "history.json").write_text(json.dumps(history, indent=1))


def _starting_errors(net: torch.nn.Module, train_set: TileSet, cfg: TrainConfig, out: Path,
                     device, has_init: bool) -> torch.Tensor | None:
    """`tile_errors` of the starting weights when ``cfg.hard_fraction`` asks for hard tiles,
    kept in ``out/tile-errors.pt`` so a resumed run draws from the same errors."""
    if cfg.hard_fraction <= 0:
        return None
    if not has_init:
        from ..errors import ModelError

        raise ModelError("hard tiles (hard_fraction > 0) are drawn where the starting network "
                         "is wrong: give starting weights (--init MODEL)")
    cache = out / ("tile-errors.pt" if cfg.hard_errors == "all"
                   else f"tile-errors-{cfg.hard_errors}.pt")
    if cache.exists():
        errors = torch.load(cache, weights_only=True)
        if len(errors) == len(train_set):
            return errors
    log.info("errors of the starting network on %d training tiles (hard tiles: %s)",
             len(train_set), cfg.hard_errors.replace("_", " "))
    errors = tile_errors(net, train_set, device, kind=cfg.hard_errors)
    torch.save(errors, cache)
    log.info("hard tiles: %d of %d tiles hold a wrong pixel (%.0f wrong pixels per tile)",
             int((errors > 0).sum()), len(errors), float(errors.mean()))
    return errors


def train(
    tiles: TileSet,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    model_id: str = "xrdmask-unet",
    init_state: dict[str, torch.Tensor] | None = None,
    parent: str | None = None,
    card_extra: dict[str, Any] | None = None,
    teacher: torch.nn.Module | None = None,
    resume: bool = True,
    progress: bool = True,
    log_level: int = logging.INFO,
    decision: dict[str, Any] | None = None,
    rehearsal: TileSet | None = None,
) -> TrainResult:
    """Train a U-Net on ``tiles``; the best epoch is saved as a model folder in ``out_dir/best``.

    Parameters
    ----------
    tiles
        Training tiles (split 80/20 into train/validation by ``config.val_fraction``).
    out_dir
        Folder for ``checkpoint.pt``, ``history.json``, ``train.log``, ``best/`` (the epoch
        of highest validation recall) and ``last/`` (the latest epoch), both model folders.
    config
        Settings; the paper's recipe by default.
    init_state
        Start from these weights (fine-tuning) instead of a fresh network.
    parent
        Model id of the model ``init_state`` came from (recorded in the card).
    card_extra
        Merged into the card's ``training`` section (command line, simulator settings...).
    decision
        The decision step written to each card (`masking.decision.DecisionRule` fields; a
        fine-tuned model keeps its base model's): none when None.
    rehearsal
        Tiles trained on every epoch beside ``tiles``' training share but never validated
        (fine-tuning's simulated rehearsal tiles): the threshold and the best epoch stay
        chosen on tiles of the data being learnt.
    teacher
        A trained network (any architecture with the same input) to distil: its spot
        probability on each training tile joins the labels in the loss, weighted by
        ``config.distill_weight``.
    resume
        Continue from ``out_dir/checkpoint.pt`` when it exists.
    progress
        Show a progress bar.
    log_level
        Level of the per-epoch log lines (one per epoch, and "resuming from ..."); a caller
        that reports epochs itself (the ``retrain`` plan) passes ``logging.DEBUG``.
    """
    cfg = config or TrainConfig()
    if tiles.x.shape[1] != cfg.architecture.in_channels:
        raise ValueError(f"the tiles have {tiles.x.shape[1]} input channels, the network "
                         f"{cfg.architecture.in_channels}: make both from the same input spec")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    train_set, val_set = tiles.split(cfg.val_fraction, cfg.seed)
    if rehearsal is not None and len(rehearsal):
        train_set = TileSet.concat([train_set, rehearsal])
    soft = None
    if teacher is not None:
        log.info("teacher probabilities for %d training tiles", len(train_set))
        soft = predict_tiles(teacher.to(device), train_set.x, device).to(torch.float16)
    net = build_network(cfg.architecture)
    if init_state is not None:
        net.load_state_dict(init_state)
    # channels-last runs oneDNN's faster convolutions on CPU (about 1.5x here)
    net = net.to(device).to(memory_format=torch.channels_last)
    errors = _starting_errors(net, train_set, cfg, out, device, init_state is not None)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    ckpt = out / "checkpoint.pt"
    history = _resume(ckpt, net, opt, device, log_level) if resume and ckpt.exists() else []
    start_epoch = len(history)
    best = max((h["val_recall"] for h in history), default=-1.0)
    scheduler = lr_scheduler(opt, cfg, start_epoch)
    gen = torch.Generator().manual_seed(cfg.seed + start_epoch)
    t_start = time.monotonic()
    bar = tqdm(range(start_epoch, cfg.epochs), desc="training", unit="epoch",
               disable=not progress, initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        t0 = time.monotonic()
        losses = _train_epoch(net, opt, loss_fn, train_set, soft, cfg, gen, device, errors)
        prob = predict_tiles(net, val_set.x, device)
        point = operating_point(prob, val_set.y, cfg.target_tnr)
        rec = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "val_recall": point["recall"],
            "val_tnr": point["tnr"],
            "threshold": point["threshold"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.monotonic() - t0,
            "tiles_per_s": len(train_set) / max(time.monotonic() - t0, 1e-9),
        }
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.4f}", recall=f"{rec['val_recall']:.3f}")
        log.log(log_level, "epoch %d/%d  loss %.4f  validation recall %.3f at TNR %.4f "
                "(tiles kept from the training data)  %.0f s, %.0f tiles/s", rec["epoch"],
                cfg.epochs, rec["loss"], rec["val_recall"], rec["val_tnr"], rec["seconds"],
                rec["tiles_per_s"])
        card = ModelCard(
            model_id=model_id,
            parent=parent,
            architecture=cfg.architecture,
            input=cfg.input,
            threshold=min(max(rec["threshold"], 1e-4), 1 - 1e-4),
            decision=dict(decision or {}),
            training={
                **(card_extra or {}),
                "config": cfg.model_dump(mode="json"),
                "epochs_trained": epoch + 1,
                "train_tiles": len(train_set),
                "val_tiles": len(val_set),
            },
            metrics={"val": {k: rec[k] for k in ("val_recall", "val_tnr", "threshold")}},
        )
        _save_epoch(out, net, opt, card, history, is_best=rec["val_recall"] > best)
        best = max(best, rec["val_recall"])
        if scheduler is not None:
            scheduler.step()
        if cfg.max_minutes and time.monotonic() - t_start > 60 * cfg.max_minutes:
            log.info("stopping after %.1f min (max_minutes)", (time.monotonic() - t_start) / 60)
            break
    from ..models.store import read_card

    return TrainResult(out / "best", read_card(out / "best"), history)
