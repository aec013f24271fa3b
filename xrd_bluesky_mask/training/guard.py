"""The retraining gate's guard: spot-free frames unlike any user's, scored for both models.

A fine-tuned model is judged on its own annotated run's held-out frames, which cannot show
what fine-tuning did to other kinds of frame. The guard frames can: one frame of each style of
`xrd-mask evaluate`'s ``negatives`` set (sharp rings in float32 and in integer counts, strong
preferred orientation on sharp rings, grainy texture at high and at low counts; phases no
training uses; seeds of their own, `GUARD_SEED`, so evaluation's frames stay unseen), where
nothing is a spot. A candidate that masks more of any of them than the base model, or raises
the Rwp of its masked pattern, beyond a small tolerance, cuts powder a user needs: the gate
refuses it (`guard_verdict`). Five frames of 512 px cost about 1 s per model on a CPU core.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..masking import Masker
from ..simulate.frame import SimulatedFrame
from ..simulate.heldout import NEGATIVE_STYLES, SEED_BASE, Case, simulate_case
from .frame_scores import score_frame

#: Seed of the first guard frame (frame i: ``GUARD_SEED + i``), apart from evaluation's seeds.
GUARD_SEED = SEED_BASE + 2000
#: The guard frames' styles, one frame each (`xrd_bluesky_mask.simulate.heldout`).
GUARD_STYLES = NEGATIVE_STYLES


@functools.lru_cache(maxsize=4)
def guard_frames(size: int = 512) -> tuple[SimulatedFrame, ...]:
    """The guard frames at ``size`` x ``size`` px, simulated once per process and size."""
    return tuple(simulate_case(Case("negatives", style, GUARD_SEED + i), size)
                 for i, style in enumerate(GUARD_STYLES))


def score_guard(maskers: Mapping[str, Masker], size: int = 512) -> dict[str, list[dict[str, Any]]]:
    """``{name: [row per guard frame]}``: each row's ``style``, ``seed``, ``size_px``,
    ``masked_pct`` (masked share of the pixels that are not static, %: every masked pixel is
    a false one here) and ``rwp`` (of the masked pattern against the spot-free pattern)."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in maskers}
    for i, sim in enumerate(guard_frames(size)):
        scores = score_frame(sim, maskers)
        for name in maskers:
            out[name].append({"style": GUARD_STYLES[i], "seed": GUARD_SEED + i, "size_px": size,
                              "masked_pct": float(scores[name]["masked_pct"]),
                              "rwp": float(scores[name]["rwp"])})
    return out


def _changes(n: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, float]:
    """Masked share change (points of %) and relative Rwp change (NaN without a base Rwp)."""
    rwp_change = ((n["rwp"] - b["rwp"]) / b["rwp"]
                  if math.isfinite(b["rwp"]) and b["rwp"] > 0 and math.isfinite(n["rwp"])
                  else float("nan"))
    return n["masked_pct"] - b["masked_pct"], rwp_change


def guard_verdict(new: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]], *,
                  masked_tolerance: float = 0.01,
                  rwp_tolerance: float = 0.02) -> tuple[bool, str]:
    """Whether the candidate (``new``, `score_guard` rows) is no worse than the base model on
    any guard frame, and why (a sentence).

    Worse: a masked share more than ``masked_tolerance`` points of % above the base model's,
    or an Rwp more than ``rwp_tolerance`` (relative) above it. A refusal names the worst frame
    first (masked share before Rwp), with both models' figures, then the other worse frames.
    """
    if [r["seed"] for r in new] != [r["seed"] for r in base]:
        raise ValueError("the guard rows of the two models are of different frames: score "
                         "both with one score_guard call")
    worse, largest = [], None
    for n, b in zip(new, base, strict=True):
        dm, dr = _changes(n, b)
        bad_m, bad_r = dm > masked_tolerance, math.isfinite(dr) and dr > rwp_tolerance
        if bad_m or bad_r:
            worse.append((not bad_m, -dm if bad_m else -dr, n, b, dm, dr))
        if largest is None or dm > largest[0]:
            largest = (dm, dr, n)
    allowed = (f"{masked_tolerance:g} points and {100 * rwp_tolerance:g} % allowed")
    if not worse:
        dm, dr, n = largest if largest is not None else (0.0, 0.0, {"style": "none"})
        return True, (f"spot-free guard frames ({len(new)}) no worse: largest change "
                      f"{n['style']}, masked {dm:+.3f} points, Rwp {100 * dr:+.1f} % "
                      f"({allowed})")
    worse.sort(key=lambda w: (w[0], w[1]))
    _, _, n, b, dm, dr = worse[0]
    what = (f"masked {n['masked_pct']:.3f} % of its pixels (base model {b['masked_pct']:.3f} "
            f"%, {dm:+.3f} points), Rwp {n['rwp']:.4f} (base model {b['rwp']:.4f}, "
            f"{100 * dr:+.1f} %)")
    others = "; ".join(f"{w[2]['style']} masked {w[4]:+.3f} points, Rwp {100 * w[5]:+.1f} %"
                       for w in worse[1:])
    return False, (f"spot-free guard frame {n['style']} (seed {n['seed']}, {n['size_px']} px) "
                   f"worse: {what}, {allowed}" + (f"; also worse: {others}" if others else ""))
