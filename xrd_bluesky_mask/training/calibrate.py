"""Choose a model's threshold on whole simulated frames for a target true-negative rate.

Training picks a threshold on validation *tiles*, which are sorted towards spot-rich tiles; on
whole frames (mostly background, rings, texture) the same threshold gives a higher TNR than
asked, and recall is left on the table. Calibration re-chooses it on whole frames that neither
training (seeds below 500,000 by default) nor evaluation (seeds from 1,000,000, held-out phases)
use, so the evaluation stays a held-out test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..progress import progress as tqdm
from .operating_point import operating_point

#: Calibration frames use seeds from here; training runs use seeds below it.
CALIBRATION_SEED_BASE = 500_000


def calibrate_threshold(model: str | Path, *, frames: int = 8, size: int = 1024,
                        target_tnr: float = 0.999, seed: int = CALIBRATION_SEED_BASE,
                        progress: bool = True) -> dict[str, Any]:
    """Threshold reaching ``target_tnr`` on ``frames`` random training-style scenes.

    Returns ``{"threshold", "tnr", "recall", "target_tnr", "frames", "size_px", "seed"}``
    (recall and TNR over the pixels of all frames, static pixels and unlabelled margins left
    out).
    """
    import torch

    from ..masking.unet import UNetMasker
    from ..simulate import known_phases, random_scene, simulate_frame
    from ..simulate.presets import HELD_OUT_PHASES

    masker = UNetMasker(model)
    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    probs, labels = [], []
    for i in tqdm(range(frames), desc="calibrating", unit="frame", disable=not progress):
        rng = np.random.default_rng(seed + i)
        sim = simulate_frame(random_scene(rng, shape=(size, size), phase_pool=pool), seed=seed + i)
        _, static, x = masker.inputs(sim.image, sim.geometry)
        prob, _ = masker.probability(x)
        y = np.where(static | sim.static_mask, -1, sim.labels).astype(np.int8)
        probs.append(torch.from_numpy(prob.ravel()))
        labels.append(torch.from_numpy(y.ravel()))
    point = operating_point(torch.cat(probs), torch.cat(labels), target_tnr)
    return {**point, "target_tnr": target_tnr, "frames": frames, "size_px": size, "seed": seed}


def write_threshold(model: str | Path, calibration: dict[str, Any]) -> Path:
    """Store a calibration's threshold in the model card (weights and checksum unchanged)."""
    from ..models.store import read_card, write_card

    card = read_card(model)
    metrics = {**card.metrics, "calibration": calibration}
    return write_card(model, card.model_copy(update={
        "threshold": float(calibration["threshold"]), "metrics": metrics}))
