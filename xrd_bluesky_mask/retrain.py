"""Fine-tuning a model on annotated runs: the work behind the ``retrain`` plan.

`prepare` reads the annotations and frames of runs from Tiled, refuses what cannot be trained
on (guard rails, all failures reported together) and holds out frames for scoring; `fine_tune`
trains from a base model one epoch at a time into a work folder (so the caller sees every
epoch and can stop between epochs) and scores the new and the base model on the held-out
frames. Neither touches the model registry: registering is the caller's decision.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import AnnotationError, Cancelled, ModelError
from .training.annotated import AnnotatedFrames

__all__ = ["FineTuneResult", "RetrainSettings", "fine_tune", "is_better", "prepare"]

log = logging.getLogger(__name__)


class RetrainSettings(BaseModel):
    """Settings of a fine-tuning run (defaults suit a few annotated frames on a CPU)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=5, ge=1, description="training epochs")
    batch_size: int = Field(default=8, ge=2, description="tiles per optimiser step")
    lr: float = Field(default=1e-3, gt=0,
                      description="Adam learning rate (a tenth of from-scratch)")
    class_weights: tuple[float, float] = Field(default=(1.0, 4.0),
                                               description="CE weight per class")
    target_tnr: float = Field(default=0.998, gt=0.5, lt=1,
                              description="threshold chosen for this TNR")
    val_fraction: float = Field(default=0.2, gt=0, lt=1,
                                description="share of training tiles scored after each epoch")
    heldout_fraction: float = Field(default=0.25, gt=0, lt=1,
                                    description="share of each run's annotated frames held out")
    min_spot_px: int = Field(default=500, ge=1, description="spot pixels needed in training frames")
    tnr_tolerance: float = Field(
        default=0.001, ge=0, lt=1,
        description="held-out TNR a better model may lose below the lower of "
        "the base model's and target_tnr")
    window: int = Field(default=256, ge=32, description="training tile size, px")
    negative_keep: float = Field(default=0.3, ge=0, le=1,
                                 description="share of spot-free tiles kept")
    augment: bool = True
    seed: int = 0
    device: str | None = Field(default=None, description="torch device; None: CUDA if usable")


@dataclass
class FineTuneResult:
    """What `fine_tune` made: the best epoch's model folder and the evidence."""

    model_dir: Path
    card: Any
    history: list[dict[str, Any]]
    n_tiles: int
    new: dict[str, Any]
    base: dict[str, Any]
    better: bool = False
    frames: dict[str, dict[str, list[int]]] = field(default_factory=dict)


def prepare(client: Any, uids: Sequence[str], settings: RetrainSettings) -> tuple[
        list[AnnotatedFrames], int]:
    """Annotated frames of ``uids`` from Tiled, with held-out frames chosen.

    Returns the runs and the number of spot-labelled pixels in their training frames.

    Raises
    ------
    AnnotationError
        Runs without annotations, annotations that no longer fit their frames, no geometry,
        frames smaller than the training window, too few annotated frames or spot pixels. All
        runs are checked and their problems listed together.
    """
    from .geometry import as_geometry
    from .tiled.annotations import load_annotations, read_annotated_frames
    from .training.annotated import check_labels, split_heldout

    if not uids:
        raise AnnotationError("no runs given: pass the uids of annotated runs "
                              "(xrd_bluesky_mask.tiled.annotations.annotated_runs(client))")
    runs, problems = [], []
    for uid in uids:
        try:
            ann = load_annotations(client, uid)
            frames = read_annotated_frames(client, ann)
            if not ann.poni:
                raise AnnotationError(
                    f"run {uid} carries no detector geometry (no PONI in its start document or "
                    "configuration); annotate it again with a run that has one"
                )
            geometry = as_geometry(ann.poni, ann.frame_shape)
            runs.append(AnnotatedFrames(ann.uid, ann.frames, frames, list(ann.codes), geometry))
        except AnnotationError as exc:
            problems.append(str(exc))
    if problems:
        raise AnnotationError("cannot retrain:\n  " + "\n  ".join(problems))
    split_heldout(runs, settings.heldout_fraction, settings.seed)
    spot_px = check_labels(runs, min_spot_px=settings.min_spot_px, window=settings.window)
    return runs, spot_px


def is_better(new: dict[str, Any], base: dict[str, Any], target_tnr: float,
              tnr_tolerance: float) -> bool:
    """Whether the new model beats the base model on the held-out frames.

    Better = higher recall, with a true-negative rate at least ``min(base TNR, target_tnr) -
    tnr_tolerance``: a model that meets the operating point it was trained for is not refused
    because the base model happened to mask less (and found fewer spots) on these frames.
    No spot or no background pixel held out (NaN) is never better.
    """
    values = (new.get("recall"), base.get("recall"), new.get("tnr"), base.get("tnr"))
    if any(not isinstance(v, int | float) or v != v for v in values):  # None or NaN
        return False
    floor = min(base["tnr"], target_tnr) - tnr_tolerance
    return new["recall"] > base["recall"] and new["tnr"] >= floor


def fine_tune(
    runs: Sequence[AnnotatedFrames],
    base: Any,
    settings: RetrainSettings,
    workdir: str | Path,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> FineTuneResult:
    """Fine-tune ``base`` (a `LoadedModel`) on the training frames, then score both models.

    Parameters
    ----------
    runs
        From `prepare` (held-out frames chosen).
    workdir
        Checkpoints and the best epoch's model folder (``workdir/train/best``).
    on_epoch
        Called with each epoch's record (``epoch``, ``loss``, ``val_recall``, ``val_tnr``,
        ``threshold``, ``lr``, ``seconds``, ``tiles_per_s``) before the next epoch starts.
    stop
        Set it to stop before the next epoch (raises `Cancelled`).
    """
    from .masking.unet import UNetMasker
    from .training.annotated import score_masker, tiles_from_annotated
    from .training.loop import TrainConfig, train

    def check() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled("fine-tuning stopped on request")

    bin_px = base.card.input.ring_bin_px
    tiles = tiles_from_annotated(runs, window=settings.window,
                                 negative_keep=settings.negative_keep, seed=settings.seed,
                                 bin_px=bin_px)
    check()
    config = TrainConfig(epochs=1, batch_size=settings.batch_size, lr=settings.lr,
                         lr_schedule="constant", class_weights=settings.class_weights,
                         val_fraction=settings.val_fraction, target_tnr=settings.target_tnr,
                         augment=settings.augment, seed=settings.seed,
                         architecture=base.card.architecture, device=settings.device,
                         ring_bin_px=bin_px)
    init = {k: v.detach().cpu().clone() for k, v in base.net.state_dict().items()}
    frames = {r.uid: {"train": r.train_indices, "heldout": list(r.heldout)} for r in runs}
    extra = {"data": {"source": "annotated runs", "frames": frames, "tiles": len(tiles)}}
    result = None
    for epoch in range(1, settings.epochs + 1):
        check()
        # one epoch per call, resuming from the checkpoint: the caller sees each epoch
        try:
            result = train(tiles, Path(workdir) / "train",
                           config.model_copy(update={"epochs": epoch}), model_id="retrained",
                           init_state=init, parent=base.card.model_id, card_extra=extra,
                           resume=True, progress=False)
        except ModelError:
            if (Path(workdir) / "train" / "best").exists():
                raise
            raise AnnotationError(  # no epoch scored: no spot pixel among the validation tiles
                f"the {settings.val_fraction:.0%} of training tiles kept for validation hold no "
                "spot pixels, so no epoch can be scored; annotate more frames with spots or "
                "raise val_fraction"
            ) from None
        if on_epoch is not None:
            on_epoch(dict(result.history[-1]))
    assert result is not None
    check()
    new = score_masker(UNetMasker(result.model_dir, device=settings.device), runs)
    old = score_masker(UNetMasker(base, device=settings.device), runs)
    log.info("held-out recall %.4f (base %.4f), TNR %.5f (base %.5f)", new["recall"],
             old["recall"], new["tnr"], old["tnr"])
    return FineTuneResult(result.model_dir, result.card, result.history, len(tiles), new, old,
                          is_better(new, old, settings.target_tnr, settings.tnr_tolerance),
                          frames)
