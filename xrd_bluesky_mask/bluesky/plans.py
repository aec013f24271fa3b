"""Plans for the beamline session: retrain the U-Net on annotated runs, switch models.

>>> RE(retrain([uid1, uid2], epochs=5, callback=cb, client=c))  # doctest: +SKIP
>>> RE(set_model("xrdmask-r3", callback=cb))                     # doctest: +SKIP

`retrain` is a Bluesky run of its own: the start document holds the training settings, the
source runs and their train/held-out frames and the base model; the ``primary`` stream has one
event per epoch (``loss``, ``val_recall``, ``val_tnr``, ``threshold``, ...); the ``result``
stream one event comparing the new and the base model on the held-out frames and the spot-free
guard frames; the stop document's ``reason`` names the registered model and says why it was (not)
activated. TiledWriter stores it like any run.

Refusals come first: calling ``retrain(...)`` reads the annotations and frames, checks them
(`xrd_bluesky_mask.retrain.prepare`) and loads the base model, so an `AnnotationError` or a
`ModelError` is raised by the call itself, before the RunEngine runs anything (no run opened,
no "Run aborted" traceback), and it warns when the annotations are the model's own
predictions. The training and scoring run in a thread; the plan polls it with ``checkpoint`` +
``sleep`` messages, so the RunEngine stays responsive: Ctrl-C pauses (training holds after its
current epoch until the plan resumes), ``RE.abort()`` stops it. The model is trained in a
temporary folder and registered only at the end, inside a registry transaction: an aborted or
failed plan leaves the registry as it was.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator, plan
from event_model.documents.event_descriptor import Dtype

from .jobs import Job, cleanup_after, wait_job
from .readable_values import Values, emit

__all__ = ["RetrainResult", "retrain", "set_model"]

log = logging.getLogger(__name__)

_ACTIVATE = {"if_better": "if_better", True: "always", "always": "always", False: "never",
             "never": "never"}
_EPOCH_KEYS = ("epoch", "loss", "val_recall", "val_tnr", "threshold", "lr", "seconds",
               "tiles_per_s")


@dataclass
class RetrainResult:
    """What `retrain` returns (``RE(...).plan_result`` with ``call_returns_result=True``)."""

    run_uid: str
    model_id: str
    version: int
    activated: bool
    better: bool
    heldout: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Why it was (not) activated, e.g. "held-out TNR 0.99425 below the 0.99700 allowed ...".
    reason: str = ""


def _epoch_done(readable: Values, record: dict[str, Any], epochs: int) -> MsgGenerator:
    """Log one training epoch (the plan's progress in a terminal or a log file), then emit it.

    The epoch's recall is the validation recall (tiles kept from the training frames), not the
    held-out frames' recall, which is scored once at the end."""
    log.info("retrain: epoch %d/%d  loss %.4f  validation recall %.3f at TNR %.4f  (%.0f s)",
             record["epoch"], epochs, record["loss"], record["val_recall"], record["val_tnr"],
             record["seconds"])
    yield from emit(readable, record, "primary")


def _registry(registry: Any) -> Any:
    from ..models.registry import ModelRegistry

    return registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)


def _client_of(client: Any, callback: Any) -> Any:
    if client is not None:
        return client
    from ..tiled.frames import TiledFrameSource
    from ..tiled.retry import RetryingSource
    from .callback import XRDMaskCallback

    if isinstance(callback, XRDMaskCallback):
        source = callback.worker.source
        if isinstance(source, RetryingSource):  # around a TiledFrameSource (xrd-mask worker)
            source = source.inner
        if isinstance(source, TiledFrameSource):
            return source.runs
    raise ValueError("retrain needs client= (the Tiled container holding the annotated runs), "
                     "or callback= an XRDMaskCallback reading from Tiled")


def _prepare(client: Any, uids: list[str], base_ref: Any, registry: Any,
             settings: Any) -> tuple:
    from ..models.store import LoadedModel, load_model
    from ..retrain import prepare

    if isinstance(base_ref, LoadedModel):
        base = base_ref
    elif isinstance(base_ref, Path):
        base = load_model(base_ref, device="cpu")
    else:
        base = registry.load(base_ref, device="cpu")
    runs, spot_px = prepare(client, uids, settings)
    return runs, spot_px, base


def _train_job(job: Job, runs: list, base: Any, settings: Any, workdir: Path) -> Any:
    from ..retrain import fine_tune

    return fine_tune(runs, base, settings, workdir, on_epoch=job.publish, stop=job.stop)


def _start_metadata(uids: list[str], runs: list, spot_px: int, base: Any, settings: Any,
                    activate: str, registry: Any, md: dict[str, Any] | None) -> dict[str, Any]:
    from ..models.store import DEFAULT_MODEL_DIR

    version = base.card.version
    if version is None and Path(base.path) == DEFAULT_MODEL_DIR:
        version = 0
    return {
        "plan_name": "retrain", "plan_type": "generator", "purpose": "xrd-mask retraining",
        "num_points": settings.epochs,
        "hints": {"dimensions": [(["epoch"], "primary")]},
        "xrd_mask_retrain": {
            "source_uids": uids,
            "frames": {r.uid: {"train": r.train_indices, "heldout": list(r.heldout)}
                       for r in runs},
            "spot_px": spot_px,
            "base_model": {"model_id": base.card.model_id, "version": version,
                           "sha256": base.card.sha256, "path": str(base.path)},
            "settings": settings.model_dump(mode="json"),
            "activate": activate, "registry": str(registry.root),
        },
        **(md or {}),
    }


def _nan_to_none(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}


def _commit(outcome: Any, base: Any, uids: list[str], settings: Any, mode: str, callback: Any,
            registry: Any, model_id: str, description: str, run_uid: str,
            poll_s: float) -> MsgGenerator:
    """Register (and maybe activate) the new model, emit the result event, close the run; all
    inside a registry transaction, so an abort before the stop document undoes it."""
    from ..masking import get_masker

    do_activate = mode == "always" or (mode == "if_better" and outcome.better)
    new, old = _nan_to_none(outcome.new), _nan_to_none(outcome.base)
    card = outcome.card
    updates = {
        "description": description or (f"{base.card.model_id} fine-tuned on the annotated "
                                       f"frames of runs {', '.join(uids)}"),
        "parent": base.card.model_id, "parent_sha256": base.card.sha256 or None,
        "runs": [{"uid": u, "train_frames": f["train"], "heldout_frames": f["heldout"]}
                 for u, f in outcome.frames.items()],
        "metrics": {**card.metrics, "heldout_annotated": {
            "new": new, "base": {**old, "model_id": base.card.model_id,
                                 "sha256": base.card.sha256}, "better": outcome.better},
            **({"guard_spot_free": outcome.guard} if outcome.guard else {})},
        "training": {**card.training, "plan": "xrd_bluesky_mask.bluesky.plans.retrain",
                     "bluesky_run_uid": run_uid, "settings": settings.model_dump(mode="json"),
                     "history": outcome.history},
    }
    masker = None
    with registry.transaction():
        entry = registry.register(outcome.model_dir, model_id=model_id, updates=updates)
        if do_activate:
            registry.activate(entry.version)
            if callback is not None:
                job = Job(lambda _job, path: get_masker("unet", model=path), entry.path,
                           name="load-model")
                masker = yield from wait_job(job, poll_s)
        verdict = ("activated" if do_activate else "not activated") + (
            " (activate=True)" if mode == "always" else
            " (activate=False)" if mode == "never" else "") + f": {outcome.verdict}"
        values = {"model_id": entry.model_id, "model_version": entry.version,
                  "activated": int(do_activate), "better": int(outcome.better),
                  "reason": verdict,
                  "heldout_frames": outcome.new["frames"],
                  "heldout_recall": outcome.new["recall"], "heldout_tnr": outcome.new["tnr"],
                  "base_recall": outcome.base["recall"], "base_tnr": outcome.base["tnr"],
                  **_guard_values(outcome.guard)}
        keys: dict[str, Dtype] = {k: ("string" if isinstance(v, str) else
                    "integer" if isinstance(v, int) else "number") for k, v in values.items()}
        yield from emit(Values("retrain_result", keys), values, "result")
        yield from bps.close_run(exit_status="success", reason=(
            f"registered {entry.model_id} as version {entry.version}; {verdict}"))
    result = RetrainResult(run_uid, entry.model_id, entry.version, do_activate, outcome.better,
                           {"new": new, "base": old}, outcome.history, verdict)
    return result, masker


def _guard_values(guard: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The result event's guard columns: frames scored and each model's largest masked share
    (%) over the spot-free guard frames (none without the guard)."""
    if not guard:
        return {}
    return {"guard_frames": len(guard["new"]),
            "guard_max_masked_pct": max(r["masked_pct"] for r in guard["new"]),
            "base_guard_max_masked_pct": max(r["masked_pct"] for r in guard["base"])}


def _checked_plan(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a plain function that checks its arguments and returns a plan as a plan (bluesky's
    ``is_plan``); unlike ``@plan``, a refusal raised by its checks leaves no half-made ``Plan``
    behind (whose ``__del__`` would print "Exception ignored")."""
    vars(fn)["_is_plan_"] = True  # what bluesky.utils.is_plan looks for
    return fn


@_checked_plan  # its checks run when it is called; it returns the run's plan
def retrain(
    annotated_uids: Sequence[Any] | str,
    base_model: Any = "active",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    settings: Any = None,
    activate: str | bool = "if_better",
    callback: Any = None,
    client: Any = None,
    registry: Any = None,
    model_id: str = "xrdmask-r{version}",
    description: str = "",
    poll_s: float = 0.2,
    md: dict[str, Any] | None = None,
) -> MsgGenerator:
    """Fine-tune the U-Net on annotated runs, register it, and switch to it if it is better.

    Parameters
    ----------
    annotated_uids
        Uids (or BlueskyRun clients) of runs with annotations
        (`xrd_bluesky_mask.tiled.annotations`).
    base_model
        Model to start from: ``"active"``, a registry version or model id, or a model folder
        (`pathlib.Path`).
    epochs, batch_size, lr
        Shortcuts for the same fields of ``settings``.
    settings
        `xrd_bluesky_mask.retrain.RetrainSettings` (held-out share, minimum spot pixels,
        target TNR, ...); None for the defaults.
    activate
        ``"if_better"``: activate the new model when its held-out recall is higher, its
        true-negative rate at most ``settings.tnr_tolerance`` below the lower of the base
        model's and ``settings.target_tnr``, and it masks no more of the spot-free guard
        frames than the base model (`xrd_bluesky_mask.retrain.judge`); True: always; False:
        register only.
    callback
        An `XRDMaskCallback` to switch to the new model (from its next run) when activated.
    client
        Tiled container holding the runs; None: the callback's.
    registry
        `ModelRegistry` or its directory; None: the default registry.
    model_id
        Id of the new version; ``{version}`` becomes its number.
    description
        Card description; None: names the base model and the runs.
    poll_s
        Seconds between polls of the training thread.
    md
        Extra start-document metadata.

    Returns
    -------
    RetrainResult
        Also the plan's result: ``RE(...).plan_result`` with ``call_returns_result=True``.

    Raises
    ------
    AnnotationError
        By the call ``retrain(...)`` itself, before the RunEngine runs anything: runs without
        annotations, annotations not matching their frames, too few annotated frames or spot
        pixels (all runs checked, listed together).
    ModelError
        Unknown or damaged base model (also by the call itself).
    """
    from ..retrain import RetrainSettings
    from ..tiled.results import run_uid_of

    if activate not in _ACTIVATE:
        raise ValueError(f"activate must be 'if_better', True or False, got {activate!r}")
    mode = _ACTIVATE[activate]
    uids = [run_uid_of(u) for u in ([annotated_uids] if isinstance(annotated_uids, str)
                                    else annotated_uids)]
    overrides = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr))
                 if v is not None}
    cfg = RetrainSettings.model_validate(
        {**(settings or RetrainSettings()).model_dump(), **overrides})
    reg = _registry(registry)
    client = _client_of(client, callback)
    runs, spot_px, base = _prepare(client, uids, base_model, reg, cfg)
    start = _start_metadata(uids, runs, spot_px, base, cfg, mode, reg, md)
    return _retrain_run(start, runs, base, uids, cfg, mode, callback, reg, model_id,
                        description, poll_s)


@plan
def _retrain_run(start: dict[str, Any], runs: list, base: Any, uids: list[str], cfg: Any,
                 mode: str, callback: Any, reg: Any, model_id: str, description: str,
                 poll_s: float) -> MsgGenerator:
    """The retraining run itself, from checked data: train, score, register, maybe activate."""
    workdir = Path(tempfile.mkdtemp(prefix="xrd-mask-retrain-"))
    jobs: list[Job] = []
    try:
        run_uid = yield from bps.open_run(md=start)
        jobs.append(Job(_train_job, runs, base, cfg, workdir, name="retrain"))
        epoch_values = Values("retrain", {k: "integer" if k == "epoch" else "number"
                                           for k in _EPOCH_KEYS})
        outcome = yield from wait_job(jobs[-1], poll_s,
                                   lambda rec: _epoch_done(epoch_values, rec, cfg.epochs))
        result, masker = yield from _commit(outcome, base, uids, cfg, mode, callback, reg,
                                            model_id, description, run_uid, poll_s)
    finally:
        for job in jobs:
            job.stop.set()
        cleanup_after(jobs[-1] if jobs else None, workdir)
    if masker is not None:
        callback.set_masker(masker)  # the callback's next run uses the new model
    log.info("retrain: registered %s as version %d, %s", result.model_id, result.version,
             result.reason)
    return result


@plan
def set_model(model_id: Any = "active", *, callback: Any = None, registry: Any = None,
              poll_s: float = 0.1) -> MsgGenerator:
    """Activate a registered model and switch ``callback`` to it (from its next run).

    Parameters
    ----------
    model_id
        Registry version (``3``, ``"v3"``), model id, ``"default"`` (version 0) or
        ``"active"`` (re-apply the active model to ``callback``).
    callback
        An `XRDMaskCallback`; None only changes the registry's active model.
    registry
        `ModelRegistry` or its directory; None: the default registry.
    poll_s
        Seconds between polls while the model loads (in a thread).

    Returns
    -------
    str
        The model id now active.

    Raises
    ------
    ModelError
        Unknown version, or weights failing their checksum (nothing is changed).
    """
    from ..masking import get_masker

    reg = _registry(registry)
    entry = reg.get(model_id)
    masker = None
    if callback is not None:  # load (and verify) first: a bad model changes nothing
        job = Job(lambda _job, path: get_masker("unet", model=path), entry.path,
                   name="load-model")
        masker = yield from wait_job(job, poll_s)
    else:
        yield from bps.null()
    reg.activate(entry.version)
    if callback is not None:
        callback.set_masker(masker)
    return entry.model_id
