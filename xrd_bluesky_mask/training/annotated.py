"""Training data and held-out scores from annotated frames (human-checked masks).

Annotation codes: 0 keep (checked, not a spot), 1 spot, 2 static and 255 not annotated; only
0 and 1 are labels, everything else (and what `prepare_frame` finds invalid) is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AnnotationError
from ..geometry import Geometry
from ..masking.preprocess import network_input, prepare_frame
from ..models.card import InputSpec
from .dataset import TileSet, tiles_from_pair


@dataclass
class AnnotatedFrames:
    """Frames of one run with their annotation codes and geometry.

    Attributes
    ----------
    uid
        Source run uid.
    indices
        Frame indices in the run.
    frames
        Counts, one ``(rows, cols)`` array per index.
    codes
        uint8 ``(rows, cols)`` annotation codes per index.
    geometry
        The run's detector geometry.
    """

    uid: str
    indices: list[int]
    frames: list[np.ndarray]
    codes: list[np.ndarray]
    geometry: Geometry
    heldout: list[int] = field(default_factory=list)

    @property
    def train_indices(self) -> list[int]:
        """Annotated frames used for training (not held out)."""
        return [i for i in self.indices if i not in self.heldout]

    def pairs(self, which: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(frame, codes)`` of the ``"train"`` or ``"heldout"`` frames."""
        keep = set(self.heldout if which == "heldout" else self.train_indices)
        return [(f, c) for i, f, c in zip(self.indices, self.frames, self.codes, strict=True)
                if i in keep]


def split_heldout(runs: Sequence[AnnotatedFrames], fraction: float, seed: int) -> None:
    """Set ``heldout`` of each run: a ``fraction`` of its annotated frames (at least one frame
    over all runs, and at least one training frame left in all)."""
    rng = np.random.default_rng(seed)
    total = sum(len(r.indices) for r in runs)
    if total < 2:
        raise AnnotationError(
            f"only {total} annotated frame(s) in runs {[r.uid for r in runs]}: retraining needs "
            "at least 2 (one to train on, one held out to check the new model); annotate more"
        )
    for r in runs:
        n = int(np.floor(fraction * len(r.indices)))
        r.heldout = sorted(int(i) for i in rng.permutation(r.indices)[:n])
    if not any(r.heldout for r in runs):
        biggest = max(runs, key=lambda r: len(r.indices))
        biggest.heldout = [int(rng.choice(biggest.indices))]
    if not any(r.train_indices for r in runs):  # pragma: no cover - fraction < 1 prevents it
        raise AnnotationError("every annotated frame was held out; lower heldout_fraction")


def check_labels(runs: Sequence[AnnotatedFrames], *, min_spot_px: int, window: int) -> int:
    """Refuse data a model cannot learn from; return the spot pixels of the training frames.

    Raises
    ------
    AnnotationError
        Frames smaller than the training ``window`` (px), or fewer than ``min_spot_px``
        spot-labelled pixels in the training frames.
    """
    for r in runs:
        rows, cols = r.frames[0].shape
        if min(rows, cols) < window:
            raise AnnotationError(f"frames of run {r.uid} are {rows}x{cols} px, smaller than the "
                                  f"{window} px training window (RetrainSettings(window=...))")
    spot = sum(int(np.count_nonzero(c == 1)) for r in runs for _, c in r.pairs("train"))
    if spot < min_spot_px:
        def frames(r: AnnotatedFrames, which: str) -> str:
            return ", ".join(f"{i} ({int(np.count_nonzero(c == 1))} px)"
                             for i, c in zip(r.indices, r.codes, strict=True)
                             if (i in r.heldout) == (which == "heldout")) or "none"

        where = "; ".join(f"run {r.uid}: training frames {frames(r, 'train')}, held out "
                          f"{frames(r, 'heldout')}" for r in runs)
        raise AnnotationError(
            f"only {spot} spot pixels are labelled in the training frames, at least "
            f"{min_spot_px} are needed (min_spot_px) [{where}]. Annotate more frames that hold "
            "spots (held-out frames do not count), or lower min_spot_px: "
            "retrain(..., settings=RetrainSettings(min_spot_px=...)), RetrainSettings from "
            "xrd_bluesky_mask.retrain"
        )
    return spot


def _ignored(codes: np.ndarray, static: np.ndarray) -> np.ndarray:
    return static | ((codes != 0) & (codes != 1))


def tiles_from_annotated(runs: Sequence[AnnotatedFrames], *, window: int = 256,
                         negative_keep: float = 0.3, seed: int = 0,
                         spec: InputSpec | None = None) -> TileSet:
    """Training tiles from the training frames of annotated runs (see `tiles_from_pair`);
    ``spec``: the input of the model being fine-tuned (its card's ``input``)."""
    rng = np.random.default_rng(seed)
    sets = []
    for r in runs:
        for frame, codes in r.pairs("train"):
            f32, static = prepare_frame(frame, r.geometry)
            x = network_input(f32, static, r.geometry, spec)
            sets.append(tiles_from_pair(x, codes == 1, _ignored(codes, static), window=window,
                                        step=window, negative_keep=negative_keep, rng=rng))
    return TileSet.concat(sets)


def score_masker(masker: Any, runs: Sequence[AnnotatedFrames]) -> dict[str, Any]:
    """Pixel recall / true-negative rate / precision of ``masker`` on the held-out frames,
    pooled over frames; only pixels annotated 0 or 1 (and not static) count."""
    from ..metrics import pixel_metrics

    tp = fp = fn = tn = frames = 0
    for r in runs:
        for frame, codes in r.pairs("heldout"):
            result = masker.predict(frame, r.geometry)
            valid = ~_ignored(codes, result.static)
            m = pixel_metrics(result.spots, codes == 1, valid)
            tp, fp, fn, tn = tp + m["tp"], fp + m["fp"], fn + m["fn"], tn + m["tn"]
            frames += 1
    nan = float("nan")
    return {"frames": frames, "recall": tp / (tp + fn) if tp + fn else nan,
            "tnr": tn / (tn + fp) if tn + fp else nan,
            "precision": tp / (tp + fp) if tp + fp else nan,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}
