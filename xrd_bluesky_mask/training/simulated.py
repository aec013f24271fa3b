"""Training data from the simulator: broadly randomised scenes, labels included."""

from __future__ import annotations

import numpy as np

from ..masking.preprocess import network_input, prepare_frame
from ..models.card import InputSpec
from ..progress import progress as tqdm
from .dataset import TileSet, tiles_from_pair


def simulated_tiles(
    n_frames: int,
    *,
    shape: tuple[int, int] = (1024, 1024),
    seed: int = 0,
    window: int = 256,
    negative_keep: float = 0.3,
    presets: list[str] | None = None,
    progress: bool = True,
    scenes: str = "v2",
    spec: InputSpec | None = None,
) -> TileSet:
    """Simulate ``n_frames`` random scenes (frame ``seed + i``) and cut them into tiles.

    Scenes never use the phases in `~xrd_bluesky_mask.simulate.presets.HELD_OUT_PHASES`,
    which evaluation keeps for its transfer test.

    Parameters
    ----------
    n_frames
        Frames to simulate.
    shape
        Frame shape ``(rows, cols)``, px.
    seed
        Base seed; frame i uses scene and noise seeds derived from ``seed + i``.
    presets
        Cycle through these scene presets as the base of each random scene; None = any.
    scenes
        ``"v2"``, ``"v3"`` or ``"v4"`` (`~xrd_bluesky_mask.simulate.random_scene`). From
        ``"v3"`` on, every other frame takes another detector shape of about the same area
        (non-square, Pilatus-like, wide), so the network meets edges, gaps and aspect ratios
        other than ``shape``'s.
    spec
        The network input: its ring widths (the model card's ``input``); None: 2 px rings.
    """
    from ..simulate import known_phases, random_scene, simulate_frame
    from ..simulate.presets import HELD_OUT_PHASES

    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)

    sets = []
    for i in tqdm(range(n_frames), desc="simulating", unit="frame", disable=not progress):
        rng = np.random.default_rng(seed + i)
        preset = presets[i % len(presets)] if presets else None
        frame_shape = shape
        if scenes != "v2" and i % 2 == 1:
            frame_shape = _other_shape(shape, rng)
        cfg = random_scene(rng, shape=frame_shape, preset=preset, phase_pool=pool,
                           scenes=scenes)
        sim = simulate_frame(cfg, seed=seed + i)
        # the network sees the frame as it will at inference (only what prepare_frame can
        # tell is invalid is zeroed); the simulator's static pixels carry no label
        f32, static = prepare_frame(sim.image, sim.geometry)
        x = network_input(f32, static, sim.geometry, spec)
        sets.append(
            tiles_from_pair(x, sim.labels, static | sim.static_mask, window=window, step=window,
                            negative_keep=negative_keep, rng=rng)
        )
    return TileSet.concat(sets)


def _other_shape(shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """A detector shape of about ``shape``'s area with another aspect ratio (rows, cols)."""
    area = shape[0] * shape[1]
    aspect = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    rows = int(round(np.sqrt(area * aspect)))
    cols = int(round(area / max(rows, 1)))
    return max(rows, 256), max(cols, 256)
