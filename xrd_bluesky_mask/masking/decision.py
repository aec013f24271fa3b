"""The decision step after the network: spots grown into their tails, and extreme pixels.

The network's threshold finds the cores of spots; two model-free rules then act on the ring
statistics the network input already has (each pixel's excess over its 2θ ring, in robust
standard deviations z):

``grow`` (hysteresis)
    Pixels connected to a detected spot and above ``grow_z`` of their ring join it, up to
    ``grow_px`` pixels from the detected core: heavy-tailed wings and the faint ends of streaks
    follow their core, while a ring's texture (not connected to a detected spot) stays.
``extreme``
    Pixels that are at once ``extreme_z`` robust sigma above their ring and ``extreme_ratio``
    times its median are spots whatever the network says: a single pixel hundreds of times
    brighter than its sharp ring is never powder signal, but a network that learnt that
    bright rings are powder can miss it.

Both are measured on the held-out groups (``xrd-mask evaluate``) before a model card turns them
on; `DecisionRule.off()` is the plain threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .rings import RingStats

__all__ = ["DecisionRule", "apply_decision", "decide"]


@dataclass(frozen=True)
class DecisionRule:
    """Settings of the decision step (see the module docstring).

    Attributes
    ----------
    grow_z
        Hysteresis threshold, robust sigma above the ring median; 0 turns growing off.
    grow_px
        Largest distance grown from a detected spot, pixels (Chebyshev).
    extreme_z, extreme_ratio
        A pixel above both (sigma above its ring, and times the ring's median) is a spot;
        ``extreme_z = 0`` turns the rule off.
    """

    grow_z: float = 0.0
    grow_px: int = 12
    extreme_z: float = 0.0
    extreme_ratio: float = 50.0

    @classmethod
    def off(cls) -> DecisionRule:
        """The plain threshold: nothing grown, no model-free rule."""
        return cls()

    @property
    def active(self) -> bool:
        return self.grow_z > 0 or self.extreme_z > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DecisionRule:
        return cls(**(d or {}))


def apply_decision(spots: np.ndarray, z: np.ndarray, ring_median: np.ndarray,
                   frame: np.ndarray, static: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """The final spot mask from the network's ``spots`` (bool ``(rows, cols)``).

    Parameters
    ----------
    spots
        The network's thresholded spots.
    z
        float32 excess of each pixel over its 2θ ring, robust sigma (`RingStats.excess`).
    ring_median
        float32 median of each pixel's ring, counts (same shape).
    frame
        float32 counts (static pixels are never spots).
    static
        bool static mask.
    rule
        What to apply.
    """
    if not rule.active:
        return spots
    out = spots.copy()
    valid = ~static
    if rule.grow_z > 0 and spots.any():
        out |= _grow(spots, valid & (z > rule.grow_z), rule.grow_px)
    if rule.extreme_z > 0:
        out |= valid & (z > rule.extreme_z) & (frame > rule.extreme_ratio
                                                * np.maximum(ring_median, 1.0))
    return out & valid


def decide(spots: np.ndarray, frame32: np.ndarray, static: np.ndarray, stats: RingStats,
           rule: DecisionRule) -> np.ndarray:
    """`apply_decision` with z and the ring medians taken from ``stats`` (the ring statistics
    the network input was made from), computed only when ``rule`` is active."""
    if not rule.active:
        return spots
    if rule.grow_z > 0:
        med = np.nan_to_num(stats.median, nan=0.0)[stats.bins.index].reshape(frame32.shape)
        return apply_decision(spots, stats.excess(frame32), med, frame32, static, rule)
    return spots | _extreme_pixels(frame32, static, stats, rule)


def _extreme_pixels(frame32: np.ndarray, static: np.ndarray, stats: RingStats,
                    rule: DecisionRule) -> np.ndarray:
    """The extreme rule of `apply_decision` alone, without full z and median images: one torch
    gather of each ring's ``extreme_ratio`` x median finds the few pixels above it, and z is
    computed for those only (about 10x faster on 8 Mpx)."""
    import torch

    med = np.nan_to_num(stats.median, nan=0.0).astype(np.float32)
    sig = np.nan_to_num(stats.sigma, nan=1.0).astype(np.float32)
    cut = torch.index_select(torch.from_numpy(rule.extreme_ratio * np.maximum(med, 1.0)), 0,
                             stats.bins.index_tensor)
    over = torch.from_numpy(frame32).reshape(-1) > cut
    flat = over.nonzero().squeeze(1).numpy()
    flat = flat[~static.ravel()[flat]]
    ring = stats.bins.index[flat]
    keep = flat[(frame32.ravel()[flat] - med[ring]) / sig[ring] > rule.extreme_z]
    out = np.zeros(frame32.shape, bool)
    out.ravel()[keep] = True
    return out


def _label(image: np.ndarray) -> np.ndarray:
    """8-connected component labels of a bool image (0 = background)."""
    labels = np.zeros(image.shape, np.int32)
    ndimage.label(image, structure=np.ones((3, 3), bool), output=labels)
    return labels


def _grow(seeds: np.ndarray, candidates: np.ndarray, reach_px: int) -> np.ndarray:
    """Candidate pixels connected (8-neighbours) to a seed, within ``reach_px`` of one; only
    the bounding boxes of the seeds' components (widened by ``reach_px``) are visited."""
    grown = np.zeros_like(seeds)
    labels = _label(seeds)
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
        lab = _label(allowed)
        keep = np.unique(lab[seed])
        grown[r0:r1, c0:c1] |= np.isin(lab, keep[keep > 0])
    return grown
