"""`Pipeline`: frames of one detector geometry ▸ masker ▸ masked integration, any masker.

One pipeline serves every path (live worker, reprocessing, predicting files, the demo,
evaluation and the benchmark). Maskers that can mask several frames at once
(`~xrd_bluesky_mask.protocols.BatchMasker`, e.g. the U-Net) get them in one call; others are
called frame by frame. One integrator per pipeline, so pyFAI's engine (or the torch CSR matrix
on the device) is built once per geometry and reused for every frame's new mask.

With ``tables=True`` each frame's result also carries what the mask found as table rows (spot
table, frame summary, ring texture: `xrd_bluesky_mask.spots.FrameTables`), computed right after
its mask and pattern; the worker turns this on, so every path that writes results writes them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..azimuthal import IntegrationSettings, cached_integrator, integrate
from ..azimuthal.orientation import Orientation
from ..geometry import Geometry, as_geometry
from ..protocols import BatchMasker, ExecutionPolicy, Masker, MaskResult
from .policy import resolve

if TYPE_CHECKING:
    from ..spots import FrameTables

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """A frame's mask, its masked 1D pattern, its tables and the seconds each stage took.

    ``timings`` always holds ``mask`` (the masker's whole time), ``integrate`` and ``total``,
    plus the masker's own stages (``normalise``, ``network``…) and ``tables`` where the tables
    were computed. ``tables`` (None unless asked for): the frame's spot table, summary row and
    ring texture, with ``frame`` 0 until `FrameTables.at` sets it."""

    mask: MaskResult
    pattern: xr.DataArray
    timings: dict[str, float] = field(default_factory=dict)
    tables: FrameTables | None = None


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
    tables
        Also compute each frame's tables (`xrd_bluesky_mask.spots.frame_tables`; about 0.5 s
        per 2880² frame on 2 busy cores).
    orientation
        How `process` turns each frame before the geometry applies (an `Orientation` or its
        name, e.g. ``"flipud"`` for a Dioptas PONI); the geometry's shape is the turned one.
        Masks and the spot table's pixel positions come back in the frame's own orientation,
        so they lie on the frame as stored.
    """

    def __init__(self, masker: Masker, geometry: Geometry | str | Any,
                 settings: IntegrationSettings | None = None, *,
                 policy: ExecutionPolicy | None = None, tables: bool = False,
                 orientation: Orientation | str | None = None) -> None:
        if geometry is None:
            from ..errors import GeometryError

            raise GeometryError("the pipeline needs the detector geometry (a PONI file or "
                                "text)")
        self.masker = masker
        self.geometry: Geometry = as_geometry(geometry)
        self.policy = resolve(policy, masker)
        self._batch_masker = masker if isinstance(masker, BatchMasker) else None
        self.tables = bool(tables)
        self.orientation = Orientation.parse(orientation)
        if self.policy.integrate_on_device:
            from ..azimuthal.csr import TorchIntegrator

            self.integrator: Any = TorchIntegrator(self.geometry, settings,
                                                   device=getattr(masker, "device", None))
        else:
            self.integrator = cached_integrator(self.geometry, settings)

    @property
    def batch(self) -> int:
        """Frames the pipeline prefers to get per `process` call."""
        return int(self.policy.batch)

    def warm(self) -> float:
        """Build now what the first frame would otherwise wait for, once per geometry: pyFAI's
        engine (an empty frame integrated), the masker's per-geometry tables (its ``warm``,
        where it has one) and the rings and sectors of the tables. The worker calls it when a
        run opens (its descriptor) and, when the start document names the geometry, already
        at the start (`WarmGeometry`), before the first frame arrives.
        Returns the seconds it took (0 when the geometry was warm already)."""
        key = ("warm", self.tables, id(self.masker))
        if self.geometry._cache.get(key):
            return 0.0
        t0 = time.perf_counter()
        frame = np.ones(self.geometry.shape, np.float32)
        blank = MaskResult(np.zeros(frame.shape, bool), np.zeros(frame.shape, bool))
        pattern = self._integrate([frame], [blank])[0]
        warm = getattr(self.masker, "warm", None)
        if callable(warm):
            warm(self.geometry)
        if self.tables:
            from ..spots import frame_tables

            frame_tables(frame, blank, self.geometry, pattern)
        self.geometry._cache[key] = True
        return time.perf_counter() - t0

    def process(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Mask and integrate ``frames`` (each ``(rows, cols)`` counts), in order."""
        if len(frames) == 0:
            return []
        turn = self.orientation
        if not turn.is_identity:
            shape = np.shape(frames[0])[-2:]
            turned = [np.ascontiguousarray(turn.apply(f)) for f in frames]
            return [_turned_back(r, turn, (int(shape[0]), int(shape[1])))
                    for r in self._process(turned)]
        return self._process(frames)

    def _process(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        t0 = time.perf_counter()
        if self._batch_masker is not None:
            masks = self._batch_masker.predict_batch(frames, self.geometry, policy=self.policy)
        else:
            masks = [self.masker.predict(f, self.geometry) for f in frames]
        t1 = time.perf_counter()
        patterns = self._integrate(frames, masks)
        t2 = time.perf_counter()
        share = 1.0 / len(frames)
        results = [FrameResult(m, pat, {**m.timings, "mask": (t1 - t0) * share,
                                        "integrate": (t2 - t1) * share,
                                        "total": (t2 - t0) * share})
                   for m, pat in zip(masks, patterns, strict=True)]
        if self.tables:
            for frame, result in zip(frames, results, strict=True):
                _add_tables(result, frame, self.geometry)
        return results

    def process_frame(self, frame: np.ndarray, *,
                      extra_static: np.ndarray | None = None) -> FrameResult:
        """One frame through `Masker.predict` (the masker's full answer, with its probability
        image where it has one), with a user's ``extra_static`` mask (True = exclude)."""
        result = _one_frame(self.masker, frame, self.geometry, extra_static,
                            lambda f, m: self._integrate([f], [m])[0])
        if self.tables:
            _add_tables(result, frame, self.geometry)
        return result

    def _integrate(self, frames: Sequence[np.ndarray], masks: list[MaskResult]) -> list:
        if self.policy.integrate_on_device:
            stack = np.stack([np.asarray(f, dtype=np.float32) for f in frames])
            return self.integrator.integrate_batch(stack, np.stack([m.mask for m in masks]))
        return [self.integrator.integrate(f, m.mask) for f, m in zip(frames, masks, strict=True)]


def _turned_back(result: FrameResult, turn: Orientation, shape: tuple[int, int]
                 ) -> FrameResult:
    """A result computed on the turned frame, with its images and the spot table's pixel
    positions back in the frame's own orientation (``shape``: the frame's rows, cols)."""
    m = result.mask

    def back(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(turn.undo(image))

    result.mask = MaskResult(back(m.spots), back(m.static),
                             None if m.probability is None else back(m.probability), m.timings)
    if result.tables is not None and len(result.tables.spots):
        spots = result.tables.spots
        rows, cols = turn.unmap_indices(spots["row_px"].to_numpy(), spots["col_px"].to_numpy(),
                                        shape)
        result.tables = dataclasses.replace(result.tables,
                                            spots=spots.assign(row_px=rows, col_px=cols))
    return result


def _add_tables(result: FrameResult, frame: np.ndarray, geometry: Geometry) -> None:
    """Compute ``result``'s tables (and their seconds, as ``timings["tables"]``). A failure
    is logged and leaves the frame without tables: its mask and pattern stand."""
    from ..spots import frame_tables

    try:
        result.tables = frame_tables(frame, result.mask, geometry, result.pattern)
    except Exception as exc:
        log.warning("xrd-mask: the tables of a frame were not computed: %s: %s",
                    type(exc).__name__, exc)
        return
    result.timings["tables"] = result.tables.seconds
    result.timings["total"] = result.timings.get("total", 0.0) + result.tables.seconds


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
                  extra_static: np.ndarray | None = None, tables: bool = False) -> FrameResult:
    """Mask ``frame`` (``(rows, cols)`` counts) and integrate it with spots and static pixels
    excluded: `Pipeline.process_frame` for a single frame (pyFAI's engine stays cached per
    geometry and settings); ``tables``: with the frame's tables."""
    result = _one_frame(masker, frame, geometry, extra_static,
                        lambda f, m: integrate(f, geometry, mask=m.mask, settings=settings))
    if tables:
        _add_tables(result, frame, geometry)
    return result
