"""Choose a model's threshold on whole simulated frames for a target true-negative rate.

Training picks a threshold on validation *tiles*, which are sorted towards spot-rich tiles; on
whole frames (mostly background, rings, texture) the same threshold gives a higher TNR than
asked, and recall is left on the table. Calibration re-chooses it on whole frames that neither
training (seeds below 500,000 by default) nor evaluation (seeds from 1,000,000, held-out phases)
use, so the evaluation stays a held-out test. The frames are of the scene set the model was
trained on (the card's ``training.data.scene_set``), and the TNR is that of the final mask:
where the card turns on a decision step (`masking.decision`), the threshold is raised until the
mask after that step keeps the target.

A TNR pooled over a few training-style frames says little about texture: they hold few
spot-free grainy rings, so a candidate calibrated that way can be judged by the release gate
at a threshold that masks texture its predecessor leaves alone. With ``spot_free_against``
(``xrd-mask calibrate --spot-free-against default``), calibration also renders frames of every
spot-free style of the release gate (`simulate.heldout.NEGATIVE_STYLES`, calibration seeds)
and raises the threshold until the model masks no more pixels on any style than the model it
is held against does at its own operating point: the candidate then meets the gate where the
gate is strictest, and its recall there is what it has to offer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..progress import progress as tqdm
from .operating_point import operating_point

if TYPE_CHECKING:
    from ..masking.decision import DecisionRule

T = TypeVar("T")

#: Calibration frames use seeds from here; training runs use seeds below it.
CALIBRATION_SEED_BASE = 500_000


def model_scene_set(model: str | Path) -> str:
    """The scene set (``"v2"``, ``"v3"``) a model was trained on; ``"v2"`` if its card does
    not say (cards written before scene sets were recorded)."""
    from ..models.store import read_card

    data = read_card(model).training.get("data", {})
    if "scene_set" in data:
        return str(data["scene_set"])
    return "v3" if "scenes='v3'" in str(data.get("scenes", "")) else "v2"


def calibrate_threshold(model: str | Path, *, frames: int = 8, size: int = 1024,
                        target_tnr: float = 0.999, seed: int = CALIBRATION_SEED_BASE,
                        scenes: str | None = None, decision: Any = None,
                        spot_free_against: str | Path | None = None,
                        spot_free_frames: int = 1,
                        progress: bool = True) -> dict[str, Any]:
    """Threshold reaching ``target_tnr`` on ``frames`` random training-style scenes.

    ``scenes``: the scene set (None: the one the model was trained on). ``decision``: a
    `DecisionRule` applied after the threshold (None: the card's). ``spot_free_against``: a
    model (name or folder) whose masked pixels on ``spot_free_frames`` frames of each spot-free
    style the threshold must not exceed (module docstring; None: no such bound). Returns
    ``{"threshold", "tnr", "recall", "target_tnr", "frames", "size_px", "seed", "scenes",
    "decision"}`` (recall and TNR of the final mask over the pixels of all frames, static
    pixels and unlabelled margins left out), and with a bound ``"spot_free"``: the model held
    against and, per style, the masked pixels of both.
    """
    import torch

    from ..masking.unet import UNetMasker
    from ..simulate import known_phases, random_scene, simulate_frame
    from ..simulate.presets import HELD_OUT_PHASES

    masker = UNetMasker(model, decision=decision)
    scenes = scenes or model_scene_set(model)
    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    probs, labels, kept = [], [], []
    for i in tqdm(range(frames), desc="calibrating", unit="frame", disable=not progress):
        rng = np.random.default_rng(seed + i)
        sim = simulate_frame(random_scene(rng, shape=(size, size), phase_pool=pool,
                                          scenes=scenes), seed=seed + i)
        f32, static, x, stats = masker.inputs_and_stats(sim.image, sim.geometry)
        prob, _ = masker.probability(x)
        y = np.where(static | sim.static_mask, -1, sim.labels).astype(np.int8)
        probs.append(torch.from_numpy(prob.ravel()))
        labels.append(torch.from_numpy(y.ravel()))
        kept.append((prob, f32, static, stats, y))
    point = operating_point(torch.cat(probs), torch.cat(labels), target_tnr)
    if masker.decision.active:
        point = _with_decision(kept, masker.decision, target_tnr, point["threshold"])
    extra: dict[str, Any] = {}
    if spot_free_against is not None:
        bound = _spot_free_bound(masker, spot_free_against, spot_free_frames, size,
                                 seed + SPOT_FREE_SEED_OFFSET, point["threshold"], progress)
        if bound["threshold"] > point["threshold"]:
            point = _point(kept, masker.decision, bound["threshold"])
        extra["spot_free"] = {"against": str(spot_free_against), "frames": spot_free_frames,
                              "styles": bound["styles"]}
    return {**point, "target_tnr": target_tnr, "frames": frames, "size_px": size, "seed": seed,
            "scenes": scenes,
            "decision": masker.decision.to_dict() if masker.decision.active else "off", **extra}


#: Seeds of the spot-free frames of a bound (``seed`` + this + i), apart from the scenes'.
SPOT_FREE_SEED_OFFSET = 10_000


def _spot_free_bound(masker: Any, against: str | Path, n: int, size: int, seed: int,
                     start: float, progress: bool, steps: int = 16) -> dict[str, Any]:
    """The lowest threshold at or above ``start`` (bisected in logit) at which ``masker``
    masks no more pixels on ``n`` frames of each spot-free style than ``against`` does with
    its card; ``{"threshold", "styles": {style: {"masked_px", "against_px"}}}``."""
    from ..masking.decision import decide
    from ..masking.unet import UNetMasker
    from ..simulate import simulate_frame
    from ..simulate.heldout import NEGATIVE_STYLES, Case, negative_scene

    reference = UNetMasker(against)
    frames: list[tuple[str, tuple]] = []
    limit: dict[str, int] = dict.fromkeys(NEGATIVE_STYLES, 0)
    cases = [Case("negatives", style, seed + i) for i in range(n) for style in NEGATIVE_STYLES]
    for case in tqdm(cases, desc="spot-free frames", unit="frame", disable=not progress):
        sim = simulate_frame(negative_scene(case, size), seed=case.seed)
        limit[case.style] += int(reference.predict(sim.image, sim.geometry,
                                                   extra_static=sim.static_mask).spots.sum())
        f32, static, x, stats = masker.inputs_and_stats(sim.image, sim.geometry,
                                                        extra_static=sim.static_mask)
        prob, _ = masker.probability(x)
        frames.append((case.style, (prob, f32, static, stats)))

    def masked(thr: float) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(NEGATIVE_STYLES, 0)
        for style, (prob, f32, static, stats) in frames:
            out[style] += int(decide((prob >= thr) & ~static, f32, static, stats,
                                     masker.decision).sum())
        return out

    def within(counts: dict[str, int]) -> bool:
        return all(counts[s] <= limit[s] for s in NEGATIVE_STYLES)

    best, counts = start, masked(start)
    if not within(counts):
        best, counts = _lowest_passing(start, 1 - 1e-6, masked, within, steps)
    return {"threshold": best,
            "styles": {s: {"masked_px": counts[s], "against_px": limit[s]}
                       for s in NEGATIVE_STYLES}}


def _point(kept: list[tuple], rule: DecisionRule, thr: float) -> dict[str, float]:
    """TNR and recall of the mask after ``rule`` at threshold ``thr`` on the calibration
    frames ``kept``."""
    from ..masking.decision import decide
    from ..metrics import pixel_metrics

    counts = [pixel_metrics(decide((prob >= thr) & ~static, f32, static, stats, rule),
                            y == 1, y >= 0) for prob, f32, static, stats, y in kept]
    tp, fp, fn, tn = (sum(c[k] for c in counts) for k in ("tp", "fp", "fn", "tn"))
    return {"threshold": thr, "tnr": tn / max(tn + fp, 1),
            "recall": tp / (tp + fn) if tp + fn else float("nan")}


#: Lowest threshold calibration tries when the decision step's veto removes components.
VETO_FLOOR = 0.05


def _with_decision(kept: list[tuple], rule: DecisionRule, target_tnr: float,
                   start: float, steps: int = 16) -> dict[str, float]:
    """The lowest threshold (bisected in logit) whose mask after ``rule`` keeps
    ``target_tnr``; the TNR falls as the threshold falls. Growing and the extreme rule only
    add spots, so without a veto the search goes up from ``start`` (the plain threshold's
    point); the veto removes components, so with it the search also goes down, to
    `VETO_FLOOR`."""
    def point(thr: float) -> dict[str, float]:
        return _point(kept, rule, thr)

    def keeps(p: dict[str, float]) -> bool:
        return p["tnr"] >= target_tnr

    best = point(start)
    if not keeps(best):
        return _lowest_passing(start, 1 - 1e-6, point, keeps, steps)[1]
    if rule.veto_ratio <= 0:
        return best
    return _lowest_passing(min(VETO_FLOOR, start), start, point, keeps, steps, at_hi=best)[1]


def _lowest_passing(lo: float, hi: float, measure: Callable[[float], T],
                    passes: Callable[[T], bool], steps: int,
                    at_hi: T | None = None) -> tuple[float, T]:
    """The lowest threshold in ``[lo, hi]`` (bisected ``steps`` times in logit) whose
    ``measure`` ``passes``, with that measure; ``hi`` is taken to pass (``at_hi``: its
    measure, when known). Used where the measure falls as the threshold falls."""
    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    best = (hi, at_hi if at_hi is not None else measure(hi))
    a, b = logit(lo), logit(hi)
    for _ in range(steps):
        mid = (a + b) / 2
        thr = 1 / (1 + math.exp(-mid))
        cand = measure(thr)
        if passes(cand):
            best, b = (thr, cand), mid
        else:
            a = mid
    return best


def write_threshold(model: str | Path, calibration: dict[str, Any]) -> Path:
    """Store a calibration's threshold and decision step in the model card (weights and
    checksum unchanged): the two make one operating point."""
    from ..models.store import read_card, write_card

    card = read_card(model)
    metrics = {**card.metrics, "calibration": calibration}
    rule = calibration.get("decision", "off")
    return write_card(model, card.model_copy(update={
        "threshold": float(calibration["threshold"]), "metrics": metrics,
        "decision": rule if isinstance(rule, dict) else {}}))
