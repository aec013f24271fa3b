"""The Masker protocol and the result every masker returns.

Kept free of heavy imports (numpy only) so that callbacks and plugins can type against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..geometry import Geometry


@dataclass
class MaskResult:
    """What a masker found in one frame.

    Attributes
    ----------
    spots
        bool ``(rows, cols)``: True where a single-crystal spot (or outlier) was found.
    static
        bool ``(rows, cols)``: True where the pixel is invalid whatever the frame shows
        (detector gaps and mask, flag/dummy values, NaN/inf). Reported apart from spots.
    probability
        float32 ``(rows, cols)`` spot probability in [0, 1], or None for model-free maskers.
    timings
        Seconds spent per stage (e.g. ``{"normalise": 0.05, "network": 1.2}``).
    """

    spots: np.ndarray
    static: np.ndarray
    probability: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        """bool ``(rows, cols)``, True = exclude from integration (spots OR static)."""
        return self.spots | self.static

    @property
    def spot_fraction(self) -> float:
        """Fraction of valid (non-static) pixels masked as spots."""
        valid = int((~self.static).sum())
        return float((self.spots & ~self.static).sum()) / max(valid, 1)


@runtime_checkable
class Masker(Protocol):
    """Finds single-crystal spots in a powder-diffraction frame.

    Implementations: `~xrd_bluesky_mask.masking.unet.UNetMasker` (the U-Net) and
    `~xrd_bluesky_mask.masking.classical.RingOutlierMasker` (the model-free baseline).

    Example
    -------
    >>> result = masker.predict(frame, geometry)   # doctest: +SKIP
    >>> result.mask.shape == frame.shape
    True
    """

    name: str

    def predict(self, frame: np.ndarray, geometry: Geometry) -> MaskResult:
        """Mask one frame (``(rows, cols)``, counts, any real dtype) with its geometry."""
        ...

    def settings(self) -> dict[str, Any]:
        """JSON-able settings recorded as provenance next to every mask."""
        ...
