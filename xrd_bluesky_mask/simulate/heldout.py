"""The held-out frames `xrd-mask evaluate` renders, and the frame makers behind them.

Each frame is a `Case` (set, style, seed) simulated at a chosen size, with seeds no training
run uses (`SEED_BASE` and above). The sets are described in `xrd_bluesky_mask.apps.evaluate`.
The ``negatives`` set's spot-free scenes (`negative_scene`) also make the retraining gate's
guard frames (`xrd_bluesky_mask.training.guard`, with seeds of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .frame import SimulatedFrame, simulate_frame
from .presets import HELD_OUT_PHASES, preset
from .random_scenes import random_scene
from .scene import SceneConfig

SEED_BASE = 1_000_000  #: held-out seeds start here; training uses seeds below it
TRANSFER_STYLES = ("rings_spots", "spots_po", "spots_texture", "negative_po")
PRESET_STYLES = ("rings_spots", "spots_po", "spots_texture", "perfect")
SHAPE_STYLES = ("streaks", "heavy_tails", "edges", "extreme_pixels", "negative_texture")
NEGATIVE_STYLES = ("sharp_rings", "sharp_rings_int", "po_sharp", "grainy_high", "grainy_low")
SETS = ("presets", "transfer", "shapes", "negatives")
#: First seed of each set (added to `SEED_BASE`); the guard frames start at 2000.
SEED_OFFSET = {"presets": 0, "transfer": 500, "shapes": 1000, "negatives": 1500}
STYLES_OF_SET = {"presets": PRESET_STYLES, "transfer": TRANSFER_STYLES,
                 "shapes": SHAPE_STYLES, "negatives": NEGATIVE_STYLES}
#: Frames per set that draw a frame of every style of every set (`heldout_cases` cycles them).
FRAMES_FOR_EVERY_STYLE = max(len(styles) for styles in STYLES_OF_SET.values())


@dataclass
class Case:
    """One held-out frame to simulate."""

    set_name: str
    style: str
    seed: int


def heldout_cases(frames_per_set: int = FRAMES_FOR_EVERY_STYLE,
                  sets: tuple[str, ...] = SETS) -> list[Case]:
    """The held-out frames: ``frames_per_set`` of each of ``sets``, styles cycled."""
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown held-out sets {sorted(unknown)}; choose from {SETS}")
    cases = [Case(name, STYLES_OF_SET[name][i % len(STYLES_OF_SET[name])],
                  SEED_BASE + SEED_OFFSET[name] + i)
             for name in sets for i in range(frames_per_set)]
    return sorted(cases, key=lambda c: (c.set_name, c.seed))


def simulate_case(case: Case, size: int) -> SimulatedFrame:
    """Render a held-out case at ``size`` x ``size`` px."""
    if case.set_name == "presets":
        cfg = preset(case.style).with_shape((size, size))
    elif case.set_name == "negatives":
        cfg = negative_scene(case, size)
    else:
        rng = np.random.default_rng(case.seed)
        cfg = random_scene(rng, shape=(size, size), preset=case.style,
                           phase_pool=HELD_OUT_PHASES,
                           scenes="v3" if case.set_name == "shapes" else "v2")
    return simulate_frame(cfg, seed=case.seed)


def negative_scene(case: Case, size: int) -> SceneConfig:
    """The spot-free scene of a ``negatives`` case (held-out phases, ``size`` x ``size`` px):
    sharp rings (FWHM 1-1.5 px) in float32 (``sharp_rings``) and in integer counts
    (``sharp_rings_int``), strong preferred orientation (bands 30-100x) on sharp rings
    (``po_sharp``), grainy, textured rings at 1e4-1e5 (``grainy_high``) and 10-300 counts
    (``grainy_low``); the scene is a function of ``case.seed``."""
    if case.style not in NEGATIVE_STYLES:
        raise ValueError(f"unknown spot-free style {case.style!r}; choose from {NEGATIVE_STYLES}")
    rng = np.random.default_rng(case.seed)
    base = "negative_grainy" if case.style.startswith("grainy") else "negative_sharp"
    cfg = random_scene(rng, shape=(size, size), preset=base, phase_pool=HELD_OUT_PHASES,
                       scenes="v4")
    integer = {"gain": 1.0, "read_noise": 0.0, "integer": True}
    upd: dict[str, Any] = {
        "sharp_rings": {"po": {"enabled": False}, "noise": {"integer": False}},
        "sharp_rings_int": {"po": {"enabled": False}, "noise": integer},
        "po_sharp": {"po": {"enabled": True, "strength": float(rng.uniform(30.0, 100.0)),
                            "base": float(rng.uniform(0.05, 0.3)),
                            "width_deg": float(rng.uniform(5.0, 30.0))},
                     "noise": {"integer": False}},
        "grainy_high": {"flux": float(rng.uniform(1e4, 1e5))},
        "grainy_low": {"flux": float(rng.uniform(10.0, 300.0))},
    }[case.style]
    if case.style == "po_sharp":
        strength = upd["po"]["strength"]
        upd["detector"] = {"saturation": max(cfg.detector.saturation,
                                             4.0 * cfg.flux * strength)}
    return cfg.updated(**upd).model_copy(update={"name": case.style})
