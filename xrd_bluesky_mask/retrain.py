"""Fine-tuning a model on annotated runs: the work behind the ``retrain`` plan.

`prepare` reads the annotations and frames of runs from Tiled, refuses what cannot be trained
on (guard rails, all failures reported together) and holds out frames for scoring; `fine_tune`
trains from a base model one epoch at a time into a work folder (so the caller sees every
epoch and can stop between epochs), with simulated rehearsal tiles mixed into every epoch so
the model keeps what it knew of other scenes, and scores the new and the base model on the
held-out frames and on spot-free guard frames unlike any user's; `judge` says whether the new
model may be activated. Neither touches the model registry: registering is the caller's
decision.
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

__all__ = ["FineTuneResult", "RetrainSettings", "fine_tune", "is_better", "judge", "prepare",
           "unchanged_predictions"]

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
    rehearsal: float = Field(
        default=0.5, ge=0, le=0.9,
        description="share of the training tiles that are simulated rehearsal tiles (the "
        "scenes the packaged model was trained on, half of them spot-free; "
        "training.rehearsal), so fine-tuning keeps what the model knew; 0: none")
    guard: bool = Field(default=True,
                        description="score both models on the spot-free guard frames "
                        "(training.guard) and refuse a candidate worse there")
    guard_size: int = Field(default=512, ge=128, le=2048, description="guard frame size, px")
    guard_masked_tolerance: float = Field(
        default=0.01, ge=0,
        description="masked share (points of %) a candidate may add on a guard frame")
    guard_rwp_tolerance: float = Field(
        default=0.02, ge=0, description="relative Rwp rise a candidate may add on a guard frame")
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
    #: Why the new model is (not) better: `judge`'s sentence.
    verdict: str = ""
    #: Rehearsal tiles among the ``n_tiles`` (`RetrainSettings.rehearsal`).
    n_rehearsal: int = 0
    #: `score_guard` rows of both models (``"new"``, ``"base"``); empty without the guard.
    guard: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


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
    unchanged_predictions(client, runs)
    return runs, spot_px


#: Annotations differing from the predicted masks in fewer labelled pixels than this share of
#: their spot pixels are "the model's own predictions" (`unchanged_predictions`).
UNCHANGED_SHARE = 0.01


def unchanged_predictions(client: Any, runs: Sequence[AnnotatedFrames], *,
                          share: float = UNCHANGED_SHARE) -> dict[str, Any] | None:
    """Warn when the training frames' annotations are (nearly) the masks a model predicted.

    Compares the labels (0 keep, 1 spot) of the training frames with the masks stored for the
    same frames in ``derived/xrd_mask`` (runs without results there are skipped). Retraining
    on a model's own predictions teaches it nothing: only corrected pixels carry news.

    Returns
    -------
    dict or None
        ``changed_px`` (labelled pixels whose label differs from the prediction), ``spot_px``
        (spot labels compared), ``frames`` (uid → compared frames), ``models`` (the models whose
        predictions were compared) and ``unchanged`` (whether it warned); None when no training
        frame has a predicted mask.
    """
    import numpy as np

    from .tiled.results import find_results

    changed = spots = 0
    compared: dict[str, list[int]] = {}
    corrected_heldout: list[str] = []
    models: set[str] = set()
    for r in runs:
        try:
            node = find_results(client, r.uid)
        except KeyError:  # no predicted masks: nothing to compare
            continue
        md = dict(node.metadata)
        done = {int(i) for i in md.get("frames_done", [])}
        pairs = [(i, c) for i, c in zip(r.indices, r.codes, strict=True) if i in done]
        if not pairs:
            continue
        array = node["mask"]
        for i, codes in pairs:
            predicted = np.asarray(array[i])
            if predicted.shape != codes.shape:
                continue
            labelled = ((codes == 0) | (codes == 1)) & (predicted != 2)
            differ = int(np.count_nonzero(labelled & ((codes == 1) != (predicted == 1))))
            if i in r.heldout:
                if differ:
                    corrected_heldout.append(f"{i} of run {r.uid}")
                continue
            changed += differ
            spots += int(np.count_nonzero(labelled & (codes == 1)))
            compared.setdefault(r.uid, []).append(i)
        models.add(str(md.get("model_id") or md.get("masker", {}).get("masker", "?")))
    if not compared:
        return None
    unchanged = changed <= share * spots
    if unchanged:
        where = "; ".join(f"run {u} frames {f}" for u, f in compared.items())
        held = (f" The corrected frame(s) {', '.join(corrected_heldout)} were held out: they only "
                "score the models; correct more frames." if corrected_heldout else "")
        log.warning(
            "the annotations of the training frames (%s) are the masks %s predicted, except "
            "%d px (%.1f %% of their %d spot pixels): retraining on a model's own predictions "
            "teaches it nothing. Correct what it got wrong first: accept_masks(client, uid, "
            "frames, edits={frame: corrected mask}) or annotate_run(client, uid, masks, "
            "frames).%s", where, " and ".join(sorted(models)), changed,
            100 * changed / max(spots, 1), spots, held)
    return {"changed_px": changed, "spot_px": spots, "frames": compared,
            "models": sorted(models), "unchanged": unchanged}


def judge(new: dict[str, Any], base: dict[str, Any], target_tnr: float,
          tnr_tolerance: float, guard: tuple[bool, str] | None = None) -> tuple[bool, str]:
    """Whether the new model beats the base model, and why (a sentence).

    Better = higher recall on the held-out frames, with a true-negative rate at least
    ``min(base TNR, target_tnr) - tnr_tolerance``: a model that meets the operating point it
    was trained for is not refused because the base model happened to mask less (and found
    fewer spots) on these frames. No spot or no background pixel held out (NaN) is never
    better. "Held-out" always means the annotated frames kept out of training (not the
    validation tiles scored after each epoch). ``guard``: `guard_verdict` on the spot-free guard
    frames; a refusal there refuses the new model whatever the held-out frames say, and its
    sentence comes first.
    """
    better, why = _judge_heldout(new, base, target_tnr, tnr_tolerance)
    if guard is None:
        return better, why
    passed, guard_why = guard
    if not passed:
        return False, f"{guard_why}; {why}"
    return better, f"{why}; {guard_why}"


def _judge_heldout(new: dict[str, Any], base: dict[str, Any], target_tnr: float,
                   tnr_tolerance: float) -> tuple[bool, str]:
    """`judge` on the held-out frames alone."""
    values = (new.get("recall"), base.get("recall"), new.get("tnr"), base.get("tnr"))
    if any(not isinstance(v, int | float) or v != v for v in values):  # None or NaN
        return False, ("the held-out frames hold no spot pixel or no background pixel, so the "
                       "models cannot be compared; annotate more frames with spots")
    floor = min(base["tnr"], target_tnr) - tnr_tolerance
    recall = (f"held-out recall {new['recall']:.4f} (base model {base['recall']:.4f})")
    tnr = (f"held-out TNR {new['tnr']:.5f} {'below' if new['tnr'] < floor else 'within'} the "
           f"{floor:.5f} allowed (the lower of the base model's {base['tnr']:.5f} and "
           f"target_tnr {target_tnr:g}, less tnr_tolerance {tnr_tolerance:g})")
    if new["tnr"] < floor:
        return False, f"{tnr}; {recall}"
    if new["recall"] <= base["recall"]:
        return False, f"{recall} not higher; {tnr}"
    return True, f"{recall} higher; {tnr}"


def is_better(new: dict[str, Any], base: dict[str, Any], target_tnr: float,
              tnr_tolerance: float, guard: tuple[bool, str] | None = None) -> bool:
    """Whether the new model beats the base model (see `judge`)."""
    return judge(new, base, target_tnr, tnr_tolerance, guard)[0]


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

    Every epoch trains on the annotated tiles and, making ``settings.rehearsal`` of all tiles,
    simulated rehearsal tiles (`xrd_bluesky_mask.training.rehearsal`; trained on, never
    validated, so the threshold is still chosen on the annotated tiles); both models are then
    scored on the held-out frames and, with ``settings.guard``, on the spot-free guard frames
    (`xrd_bluesky_mask.training.guard`), and `judge` decides.

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
    from .training.guard import guard_verdict, score_guard
    from .training.loop import TrainConfig, train
    from .training.rehearsal import REHEARSAL_STYLES, rehearsal_count, rehearsal_tiles

    def check() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled("fine-tuning stopped on request")

    spec = base.card.input
    tiles = tiles_from_annotated(runs, window=settings.window,
                                 negative_keep=settings.negative_keep, seed=settings.seed,
                                 spec=spec)
    n_annotated = len(tiles)
    n_rehearsal = rehearsal_count(n_annotated, settings.rehearsal)
    rehearsal = None
    if n_rehearsal:  # trained on, never validated: the threshold stays the user's scene's
        check()
        rehearsal = rehearsal_tiles(n_rehearsal, window=settings.window, seed=settings.seed,
                                    spec=spec)
    check()
    config = TrainConfig(epochs=1, batch_size=settings.batch_size, lr=settings.lr,
                         lr_schedule="constant", class_weights=settings.class_weights,
                         val_fraction=settings.val_fraction, target_tnr=settings.target_tnr,
                         augment=settings.augment, seed=settings.seed,
                         architecture=base.card.architecture, device=settings.device,
                         input=spec)
    init = {k: v.detach().cpu().clone() for k, v in base.net.state_dict().items()}
    frames = {r.uid: {"train": r.train_indices, "heldout": list(r.heldout)} for r in runs}
    extra = {"data": {"source": "annotated runs", "frames": frames, "tiles": n_annotated,
                      "rehearsal": {"tiles": n_rehearsal, "share": settings.rehearsal,
                                    "seed": settings.seed, "frame_px": 2 * settings.window,
                                    "scenes": "simulate.random_scene(scenes='v4'), styles "
                                    f"{', '.join(dict.fromkeys(REHEARSAL_STYLES))} cycled, "
                                    "phases except simulate.presets.HELD_OUT_PHASES"}}}
    result = None
    for epoch in range(1, settings.epochs + 1):
        check()
        # one epoch per call, resuming from the checkpoint: the caller sees each epoch
        try:
            result = train(tiles, Path(workdir) / "train",
                           config.model_copy(update={"epochs": epoch}), model_id="retrained",
                           init_state=init, parent=base.card.model_id, card_extra=extra,
                           resume=True, progress=False, log_level=logging.DEBUG,
                           decision=base.card.decision, rehearsal=rehearsal)
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
    maskers = {"new": UNetMasker(result.model_dir, device=settings.device),
               "base": UNetMasker(base, device=settings.device)}
    new = score_masker(maskers["new"], runs)
    old = score_masker(maskers["base"], runs)
    guard, verdict = {}, None
    if settings.guard:
        check()
        guard = score_guard(maskers, settings.guard_size)
        verdict = guard_verdict(guard["new"], guard["base"],
                                masked_tolerance=settings.guard_masked_tolerance,
                                rwp_tolerance=settings.guard_rwp_tolerance)
    better, why = judge(new, old, settings.target_tnr, settings.tnr_tolerance, verdict)
    return FineTuneResult(result.model_dir, result.card, result.history,
                          n_annotated + n_rehearsal, new, old, better, frames, why, n_rehearsal,
                          guard)
