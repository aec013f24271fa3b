"""`Pipeline`: frames of one detector geometry ▸ masker ▸ masked integration, any masker.

One pipeline serves every path (live worker, reprocessing, predicting files, the demo,
evaluation and the benchmark). Maskers that can mask several frames at once
(`~xrd_bluesky_mask.protocols.BatchMasker`, e.g. the U-Net) get them in one call; others are
called frame by frame. One integrator per pipeline, so pyFAI's engine (or the torch CSR matrix
on the device) is built once per geometry and reused for every frame's new mask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..azimuthal import IntegrationSettings, cached_integrator, integrate
from ..geometry import Geometry, as_geometry
from ..protocols import BatchMasker, ExecutionPolicy, Masker, MaskResult
from .policy import resolve


@dataclass
class FrameResult:
    """A frame's mask, its masked 1D pattern and the seconds each stage took.

    ``timings`` always holds ``mask`` (the masker's whole time), ``integrate`` and ``total``,
    plus the masker's own stages (``normalise``, ``network``…)."""

    mask: MaskResult
    pattern: xr.DataArray
    timings: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """Mask and integrate frames of one geometry with one masker.

    Parameters
    ----------
    masker
        Any `Masker`; a `BatchMasker` gets whole batches.
    geometry
        The detector geometry (`Geometry`, PONI path or text).
    settings
        Integration settings; None = the defaults.
    policy
        Device-side choices (batch, tiling, precision, where to integrate); ``"auto"`` fields
        are decided here for the masker's device and logged (`pipeline.policy.resolve`).
    """

    def __init__(self, masker: Masker, geometry: Geometry | str | Any,
                 settings: IntegrationSettings | None = None, *,
                 policy: ExecutionPolicy | None = None) -> None:
        if geometry is None:
            from ..errors import GeometryError

            raise GeometryError("the pipeline needs the detector geometry (a PONI file or "
                                "text)")
        self.masker = masker
        self.geometry: Geometry = as_geometry(geometry)
        self.policy = resolve(policy, masker)
        self._batched = isinstance(masker, BatchMasker)
        if self.policy.integrate_on_device:
            from ..azimuthal.csr import TorchIntegrator

            self.integrator: Any = TorchIntegrator(self.geometry, settings,
                                                   device=getattr(masker, "device", None))
        else:
            self.integrator = cached_integrator(self.geometry, settings)

    @property
    def batch(self) -> int:
        """Frames the pipeline prefers to get per `process` call."""
        return int(self.policy.batch)  # type: ignore[arg-type]

    def process(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Mask and integrate ``frames`` (each ``(rows, cols)`` counts), in order."""
        if len(frames) == 0:
            return []
        t0 = time.perf_counter()
        if self._batched:
            masks = self.masker.predict_batch(frames, self.geometry,  # type: ignore[attr-defined]
                                              policy=self.policy)
        else:
            masks = [self.masker.predict(f, self.geometry) for f in frames]
        t1 = time.perf_counter()
        patterns = self._integrate(frames, masks)
        t2 = time.perf_counter()
        share = 1.0 / len(frames)
        return [FrameResult(m, pat, {**m.timings, "mask": (t1 - t0) * share,
                                     "integrate": (t2 - t1) * share, "total": (t2 - t0) * share})
                for m, pat in zip(masks, patterns, strict=True)]

    def process_frame(self, frame: np.ndarray, *,
                      extra_static: np.ndarray | None = None) -> FrameResult:
        """One frame through `Masker.predict` (the masker's full answer, with its probability
        image where it has one), with a user's ``extra_static`` mask (True = exclude)."""
        return _one_frame(self.masker, frame, self.geometry, extra_static,
                          lambda f, m: self._integrate([f], [m])[0])

    def _integrate(self, frames: Sequence[np.ndarray], masks: list[MaskResult]) -> list:
        if self.policy.integrate_on_device:
            stack = np.stack([np.asarray(f, dtype=np.float32) for f in frames])
            return self.integrator.integrate_batch(stack, np.stack([m.mask for m in masks]))
        return [self.integrator.integrate(f, m.mask) for f, m in zip(frames, masks, strict=True)]


def _one_frame(masker: Masker, frame: np.ndarray, geometry: Geometry,
               extra_static: np.ndarray | None,
               integrate_one: Callable[[np.ndarray, MaskResult], xr.DataArray]) -> FrameResult:
    t0 = time.perf_counter()
    mask = masker.predict(frame, geometry, extra_static=extra_static)
    t1 = time.perf_counter()
    pattern = integrate_one(frame, mask)
    t2 = time.perf_counter()
    return FrameResult(mask, pattern, {**mask.timings, "mask": t1 - t0, "integrate": t2 - t1,
                                       "total": t2 - t0})


def process_frame(frame: np.ndarray, geometry: Geometry, masker: Masker, *,
                  settings: IntegrationSettings | None = None,
                  extra_static: np.ndarray | None = None) -> FrameResult:
    """Mask ``frame`` (``(rows, cols)`` counts) and integrate it with spots and static pixels
    excluded: `Pipeline.process_frame` for a single frame (pyFAI's engine stays cached per
    geometry and settings)."""
    return _one_frame(masker, frame, geometry, extra_static,
                      lambda f, m: integrate(f, geometry, mask=m.mask, settings=settings))
