"""Rehearsal tiles: simulated scenes mixed into fine-tuning so the model keeps what it knew.

Fine-tuning on a few annotated frames of one scene moves the network towards that scene and
away from others (measured by ``benchmarks/retraining_demo.py``: spot-free grainy rings of
another kind masked eight times more). Mixing tiles of the scenes the packaged model was
trained on into every epoch, spot-free ones included, keeps the old answers in the loss. The
tiles are a deterministic function of ``(window, seed, bin_px)`` and frame number, simulated
once per process (`functools.lru_cache`), on frames of ``2 * window`` px (four tiles each).
"""

from __future__ import annotations

import functools

import numpy as np

from ..masking.preprocess import network_input, prepare_frame
from ..models.card import InputSpec
from .dataset import TileSet, tiles_from_pair

#: Scene styles cycled frame by frame (``random_scene(scenes="v4")``): every other one is
#: spot-free (sharp rings, grainy texture, strong preferred orientation, perfect rings).
REHEARSAL_STYLES = ("rings_spots", "negative_sharp", "spots_po", "negative_grainy",
                    "spots_texture", "negative_po", "faint_spots", "negative_texture",
                    "streaks", "negative_grainy", "faint_on_texture", "perfect")
#: Frames simulated at most per tile asked for (a frame gives up to four tiles).
_MAX_FRAMES_PER_TILE = 4


def rehearsal_count(annotated_tiles: int, share: float) -> int:
    """Rehearsal tiles to add to ``annotated_tiles`` so that they make ``share`` (0-1) of all."""
    if share <= 0 or annotated_tiles <= 0:
        return 0
    return max(1, int(round(annotated_tiles * share / (1.0 - share))))


def frame_seed(seed: int, k: int) -> int:
    """Simulation seed of rehearsal frame ``k``: below evaluation's held-out seeds (1e6)."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0]) % 1_000_000


@functools.lru_cache(maxsize=512)
def frame_tiles(k: int, window: int, seed: int, bin_px: float,
                coarse_bin_px: float | None = None,
                blob_sigmas_px: tuple[float, ...] = ()) -> TileSet:
    """The tiles of rehearsal frame ``k`` (style ``REHEARSAL_STYLES[k % 12]``, training phases
    only, ``2 * window`` px square): every tile with more than half its pixels labelled,
    spot-free ones included. ``bin_px``, ``coarse_bin_px``, ``blob_sigmas_px``: the network
    input (a model card's ``input``). Cached: a process simulates each frame once."""
    from ..simulate import known_phases, random_scene, simulate_frame
    from ..simulate.presets import HELD_OUT_PHASES

    pool = tuple(p for p in known_phases() if p not in HELD_OUT_PHASES)
    s = frame_seed(seed, k)
    rng = np.random.default_rng(s)
    cfg = random_scene(rng, shape=(2 * window, 2 * window),
                       preset=REHEARSAL_STYLES[k % len(REHEARSAL_STYLES)], phase_pool=pool,
                       scenes="v4")
    sim = simulate_frame(cfg, seed=s)
    f32, static = prepare_frame(sim.image, sim.geometry)
    x = network_input(f32, static, sim.geometry,
                      InputSpec(ring_bin_px=bin_px, coarse_ring_bin_px=coarse_bin_px,
                                blob_sigmas_px=list(blob_sigmas_px)))
    return tiles_from_pair(x, sim.labels, static | sim.static_mask, window=window, step=window,
                           negative_keep=1.0, rng=rng)


def rehearsal_tiles(n: int, *, window: int = 256, seed: int = 0,
                    spec: InputSpec | None = None) -> TileSet:
    """``n`` rehearsal tiles of ``window`` px: those of frames 0, 1, 2, ... (`frame_tiles`) in
    order, cut at ``n``. The same arguments give the same tiles; a larger ``n`` extends a
    smaller one. ``spec``: the network input (the base model's card's ``input``)."""
    if n <= 0:
        raise ValueError(f"rehearsal tiles asked for: {n}; ask for at least 1")
    spec = spec or InputSpec()
    sets, have = [], 0
    for k in range(_MAX_FRAMES_PER_TILE * n + len(REHEARSAL_STYLES)):
        tiles = frame_tiles(k, window, seed, spec.ring_bin_px, spec.coarse_ring_bin_px,
                            tuple(spec.blob_sigmas_px))
        sets.append(tiles)
        have += len(tiles)
        if have >= n:
            break
    out = TileSet.concat(sets)
    return TileSet(out.x[:n], out.y[:n])
