"""One frame through the whole chain: mask, then masked integration, with per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .geometry import Geometry
from .integration import IntegrationSettings, integrate
from .masking.base import Masker, MaskResult


@dataclass
class FrameResult:
    """A frame's mask, its masked 1D pattern and the seconds each stage took."""

    mask: MaskResult
    pattern: xr.DataArray
    timings: dict[str, float] = field(default_factory=dict)


def process_frame(
    frame: np.ndarray,
    geometry: Geometry,
    masker: Masker,
    *,
    settings: IntegrationSettings | None = None,
    extra_static: np.ndarray | None = None,
) -> FrameResult:
    """Mask ``frame`` (``(rows, cols)`` counts) and integrate it with spots and static excluded."""
    t0 = time.perf_counter()
    if extra_static is not None:
        result = masker.predict(frame, geometry, extra_static=extra_static)  # type: ignore[call-arg]
    else:
        result = masker.predict(frame, geometry)
    t1 = time.perf_counter()
    pattern = integrate(frame, geometry, mask=result.mask, settings=settings)
    t2 = time.perf_counter()
    timings = {**result.timings, "mask_total": t1 - t0, "integrate": t2 - t1, "total": t2 - t0}
    return FrameResult(result, pattern, timings)
