"""`RingOutlierMasker`: the conventional per-ring outlier filter, as GSAS-II does it.

Pixels are binned by 2θ (about one bin per 2 px of radius); a pixel is an outlier when it lies
more than ``n_sigma`` robust standard deviations (1.4826·MAD) above its bin's median. It needs
no model and is the baseline every benchmark compares against. Its known weakness: a strong
preferred-orientation band lifts a whole arc of its ring above the ring median, and the filter
masks that real signal too.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..geometry import Geometry
from ..protocols import MaskResult
from .preprocess import prepare_frame
from .rings import ring_stats


class RingOutlierMasker:
    """The model-free per-ring robust threshold.

    Parameters
    ----------
    n_sigma
        Cut, in robust standard deviations above (``side="upper"``) or either side
        (``side="both"``) of the ring median.
    bin_px
        2θ bin width in pixels of radius.
    side
        ``"upper"``: only bright outliers (spots); ``"both"``: also dark ones.
    max_per_bin
        Estimate each ring's median/MAD from at most this many pixels (faster); None = all.
    """

    name = "classical"

    def __init__(
        self,
        n_sigma: float = 3.0,
        *,
        bin_px: float = 2.0,
        side: str = "upper",
        max_per_bin: int | None = None,
    ) -> None:
        if n_sigma <= 0:
            raise ValueError(f"n_sigma must be > 0, got {n_sigma}")
        if side not in ("upper", "both"):
            raise ValueError(f"side must be 'upper' or 'both', got {side!r}")
        self.n_sigma, self.bin_px, self.side, self.max_per_bin = n_sigma, bin_px, side, max_per_bin

    def settings(self) -> dict[str, Any]:
        """Provenance: the cut and the binning."""
        return {
            "masker": self.name,
            "n_sigma": self.n_sigma,
            "bin_px": self.bin_px,
            "side": self.side,
            "max_per_bin": self.max_per_bin,
        }

    def warm(self, geometry: Geometry) -> None:
        """Build the geometry's ring tables this masker uses, before the first frame."""
        self.predict(np.ones(geometry.shape, np.float32), geometry)

    def predict(
        self, frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
    ) -> MaskResult:
        """Mask one frame (``(rows, cols)`` counts) with its geometry."""
        t0 = time.perf_counter()
        f32, static = prepare_frame(frame, geometry, extra_static=extra_static)
        stats = ring_stats(
            f32, ~static, geometry, bin_px=self.bin_px, max_per_bin=self.max_per_bin
        )
        t1 = time.perf_counter()
        z = stats.excess(f32)
        spots = (np.abs(z) if self.side == "both" else z) > self.n_sigma
        spots &= ~static
        t2 = time.perf_counter()
        return MaskResult(
            spots=spots, static=static, timings={"normalise": t1 - t0, "threshold": t2 - t1}
        )
