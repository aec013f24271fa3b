"""The decision step after the network: spots grown into their tails, and extreme pixels.

The network's threshold finds the cores of spots; two model-free rules then act on each pixel's
excess over the powder level of its own neighbourhood (`rings.LocalStats`: the larger of the
median of its (ring, χ-sector) cell and of the cell at χ + 180°, in robust standard deviations
z of its ring):

``grow`` (hysteresis)
    Pixels connected to a detected spot and above ``grow_z`` of their local level join it, up
    to ``grow_px`` pixels from the detected core: heavy-tailed wings and the faint ends of
    streaks follow their core, while a ring's texture (not connected to a detected spot) stays.
``extreme``
    Pixels that are at once ``extreme_z`` robust sigma above their local level and
    ``extreme_ratio`` times it are spots whatever the network says: a single pixel hundreds of
    times brighter than its sharp ring is never powder signal, but a network that learnt that
    bright rings are powder can miss it.
``veto`` (the extreme rule's converse)
    A component the network found is dropped when its brightest pixel is both below
    ``veto_ratio`` times the bright end (90th percentile) of the ring at χ + 180° around the
    mirrored pixel and below ``veto_local`` times its own local level (`veto_components`):
    preferred orientation is centro-symmetric, so a band's crest has a twin as bright on the
    other side of the ring and sits near the powder around it, while a single-crystal spot has
    no twin. Where the ring has no other side on the detector nothing is dropped. Applied
    before growing.

Why local: on a ring with strong preferred orientation most of the ring is the dim part
between the bands, so against the whole ring's median a band's crest is more than 50 sigma and
50x above: powder read as "extreme" (``level="ring"``, the rule before card schema 4, kept only
to measure that). Preferred orientation is centro-symmetric and spans a stretch of χ, a
single-crystal spot does neither, so against the larger of the two cells a band's crest is
close to its level and a spot still stands out.

Both are measured on the held-out groups (``xrd-mask evaluate``) before a model card turns them
on; `DecisionRule.off()` is the plain threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
from scipy import ndimage

from . import windows
from .rings import LocalStats

__all__ = ["LEVELS", "DecisionRule", "apply_decision", "component_labels", "decide",
           "veto_components"]

#: What a pixel is compared with: its neighbourhood (``"local"``) or its whole ring (``"ring"``).
LEVELS = ("local", "ring")


@dataclass(frozen=True)
class DecisionRule:
    """Settings of the decision step (see the module docstring).

    Attributes
    ----------
    grow_z
        Hysteresis threshold, robust sigma above the local level; 0 turns growing off.
    grow_px
        Largest distance grown from a detected spot, pixels (Chebyshev).
    extreme_z, extreme_ratio
        A pixel above both (sigma above its level, and times its level) is a spot;
        ``extreme_z = 0`` turns the rule off.
    level
        ``"local"`` (the default): the level of the pixel's (ring, χ-sector) cell and its
        opposite; ``"ring"``: the whole ring's median, which cuts preferred-orientation bands
        (kept to measure that, never in a card).
    veto_ratio
        A network component whose brightest pixel is below this many times the 90th
        percentile of its ring around the mirrored pixel (χ + 180°), and below ``veto_local``
        times its own local level, is dropped; 0 turns the veto off.
    veto_local
        See ``veto_ratio``: a component this many times above the powder around it is kept
        whatever its mirror holds.
    """

    grow_z: float = 0.0
    grow_px: int = 12
    extreme_z: float = 0.0
    extreme_ratio: float = 50.0
    level: str = "local"
    veto_ratio: float = 0.0
    veto_local: float = 2.5

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"decision level must be one of {', '.join(LEVELS)}, "
                             f"got {self.level!r}")

    @classmethod
    def off(cls) -> DecisionRule:
        """The plain threshold: nothing grown, no model-free rule."""
        return cls()

    @property
    def active(self) -> bool:
        return self.grow_z > 0 or self.extreme_z > 0 or self.veto_ratio > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DecisionRule:
        return cls(**(d or {}))


def apply_decision(spots: np.ndarray, z: np.ndarray, level: np.ndarray,
                   frame: np.ndarray, static: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """The final spot mask from the network's ``spots`` (bool ``(rows, cols)``).

    Parameters
    ----------
    spots
        The network's thresholded spots.
    z
        float32 excess of each pixel over its level, robust sigma (`LocalStats.excess`).
    level
        float32 level each pixel is compared with, counts (same shape; `LocalStats.level`).
    frame
        float32 counts (static pixels are never spots).
    static
        bool static mask.
    rule
        What to apply (its ``level`` says which level ``z`` and ``level`` must be).
    """
    if not rule.active:
        return spots
    out = spots.copy()
    valid = ~static
    if rule.grow_z > 0 and spots.any():
        out |= _grow(spots, valid & (z > rule.grow_z), rule.grow_px)
    if rule.extreme_z > 0:
        out |= valid & (z > rule.extreme_z) & (frame > rule.extreme_ratio
                                                * np.maximum(level, 1.0))
    return out & valid


def decide(spots: np.ndarray, frame32: np.ndarray, static: np.ndarray, stats: LocalStats,
           rule: DecisionRule) -> np.ndarray:
    """`apply_decision` with z and the levels taken from ``stats`` (the statistics the
    network input was made from), computed only when ``rule`` is active."""
    if not rule.active:
        return spots
    out = spots
    if rule.veto_ratio > 0:
        out = veto_components(out, frame32, static, stats, rule.veto_ratio, rule.veto_local)
    if rule.grow_z > 0:
        z, level = _excess_and_level(frame32, stats, rule)
        out = apply_decision(out, z, level, frame32, static,
                             DecisionRule(grow_z=rule.grow_z, grow_px=rule.grow_px))
    if rule.extreme_z > 0:
        out = out | _extreme_pixels(frame32, static, stats, rule)
    return out


def veto_components(spots: np.ndarray, frame32: np.ndarray, static: np.ndarray,
                    stats: LocalStats, ratio: float, local: float = 2.5) -> np.ndarray:
    """``spots`` without the components (8-connected) whose brightest valid pixel is below
    ``ratio`` times the 90th percentile of its ring around the pixel at χ + 180°
    (`windows.opposite_pixels`, `windows.window_quantiles`) and below ``local`` times its own
    level: the larger of the opposite cell's median, the ring's median and the median of the
    ring around it without the pixels the network found (neither its own cell nor its window
    may count the component itself: a spot larger than them would set its own level)."""
    labels, n = component_labels(spots)
    if n == 0:
        return spots
    members = np.flatnonzero(labels)  # the brightest pixel of each component, from its pixels
    label = labels.ravel()[members]  # only (ndimage.maximum_position sorts the whole frame)
    order = np.lexsort((np.where(static.ravel()[members], -np.inf, frame32.ravel()[members]),
                        label))
    flat = members[order[np.r_[np.flatnonzero(np.diff(label[order])), len(order) - 1]]]
    peak = frame32.ravel()[flat]
    valid = ~static & (frame32 >= 0)
    cells, ring = stats.cells, stats.ring
    twin = windows.opposite_pixels(stats.geometry, ring.bins, flat)
    mirror = windows.window_quantiles(frame32, valid, stats.geometry, twin, q=0.9)
    weak = np.isfinite(mirror) & (peak < ratio * np.nan_to_num(mirror))  # no twin: kept
    if weak.any():
        base = np.fmax(np.nan_to_num(stats.cell_median[cells.opposite[cells.index[flat]]],
                                     nan=0.0),
                       np.nan_to_num(ring.median, nan=0.0)[ring.bins.index[flat]])
        level = stats.neighbourhood_level(frame32, valid & ~spots, flat[weak],
                                          base=base[weak].astype(np.float32))
        weak[weak] = peak[weak] < local * np.maximum(level, 1.0)
    if not weak.any():
        return spots
    dropped = np.zeros(n + 1, bool)
    dropped[1:] = weak
    return spots & ~dropped[labels]


def _excess_and_level(frame32: np.ndarray, stats: LocalStats,
                      rule: DecisionRule) -> tuple[np.ndarray, np.ndarray]:
    """The z and level images ``rule`` compares with (its ``level``)."""
    if rule.level == "local":
        level = stats.level(frame32.shape)
        sig = np.nan_to_num(stats.ring.sigma, nan=1.0)[stats.ring.bins.index]
        z = (frame32 - level) / sig.reshape(frame32.shape)
        return z.astype(np.float32, copy=False), level
    ring = stats.ring
    level = np.nan_to_num(ring.median, nan=0.0)[ring.bins.index].reshape(frame32.shape)
    return ring.excess(frame32), level


def _extreme_pixels(frame32: np.ndarray, static: np.ndarray, stats: LocalStats,
                    rule: DecisionRule) -> np.ndarray:
    """The extreme rule without full z images: torch gathers of each cell's (or ring's) level
    find the few candidate pixels above ``extreme_ratio`` x level; with the local level,
    each candidate's level is then refined around it (`LocalStats.neighbourhood_level`, never
    lower than its cell's), and z is computed for those only."""
    import torch

    ring = stats.ring
    sig = np.nan_to_num(ring.sigma, nan=1.0).astype(np.float32)
    ring_med = np.nan_to_num(ring.median, nan=0.0).astype(np.float32)
    if rule.level == "local":
        level = torch.index_select(torch.from_numpy(stats.cell_level), 0,
                                   stats.cells.index_tensor)
        if not stats.same_bins:
            level = torch.maximum(level, torch.index_select(torch.from_numpy(ring_med), 0,
                                                            ring.bins.index_tensor))
    else:
        level = torch.index_select(torch.from_numpy(ring_med), 0, ring.bins.index_tensor)
    cut = level.clamp(min=1.0).mul_(rule.extreme_ratio)
    over = torch.from_numpy(frame32).reshape(-1) > cut
    flat = over.nonzero().squeeze(1).numpy()
    flat = flat[~static.ravel()[flat]]
    values = frame32.ravel()[flat]
    if rule.level == "local":  # the candidates' levels, refined around each of them
        lv = stats.neighbourhood_level(frame32, ~static & (frame32 >= 0), flat)
        flat, values, lv = (a[values > rule.extreme_ratio * np.maximum(lv, 1.0)]
                            for a in (flat, values, lv))
    else:
        lv = level.numpy()[flat]
    z = (values - lv) / sig[ring.bins.index[flat]]
    keep = flat[z > rule.extreme_z]
    out = np.zeros(frame32.shape, bool)
    out.ravel()[keep] = True
    return out


def component_labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a bool image: int32 labels (0 = background) and their count."""
    labels = np.zeros(mask.shape, np.int32)
    count = cast(int, ndimage.label(mask, structure=np.ones((3, 3), bool), output=labels))
    return labels, int(count)


def _grow(seeds: np.ndarray, candidates: np.ndarray, reach_px: int) -> np.ndarray:
    """Candidate pixels connected (8-neighbours) to a seed, within ``reach_px`` of one; only
    the bounding boxes of the seeds' components (widened by ``reach_px``) are visited."""
    grown = np.zeros_like(seeds)
    labels, _ = component_labels(seeds)
    if not labels.any():
        return grown
    rows, cols = seeds.shape
    size = 2 * reach_px + 1
    boxes = ndimage.find_objects(labels)
    for box in boxes:
        if box is None:
            continue
        r0, r1 = max(box[0].start - reach_px, 0), min(box[0].stop + reach_px, rows)
        c0, c1 = max(box[1].start - reach_px, 0), min(box[1].stop + reach_px, cols)
        seed = seeds[r0:r1, c0:c1]
        near = ndimage.maximum_filter(seed, size=size, mode="constant")
        allowed = (candidates[r0:r1, c0:c1] & near) | seed
        lab, _ = component_labels(allowed)
        keep = np.unique(lab[seed])
        grown[r0:r1, c0:c1] |= np.isin(lab, keep[keep > 0])
    return grown
