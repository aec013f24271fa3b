"""The worker's compute stage: one `Pipeline` per open run, and the frames of a run masked.

`ComputeStage` is what the `Worker`'s compute thread does with each item, and what its Dask
fan-out (`xrd_bluesky_mask.pipeline.fanout`) does around the frames it sends to the cluster:
a run opens (its masker's settings and the provenance of its results; its `Pipeline` built from
the PONI and warmed up before the first frame), the geometry of its first frame is checked
(`xrd_bluesky_mask.pipeline.run_geometry`), groups of its frames are masked and integrated (one
call for a masker that masks batches; one by one if the batch fails), a masker chosen with
`Worker.set_masker` is taken up by the next run, and a closed run's pipeline is dropped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, RunFailed
from ..protocols import ExecutionPolicy, Masker
from ..provenance import provenance
from .items import (
    CloseRun,
    Computed,
    Failure,
    FrameRead,
    Opened,
    OpenRun,
    RunRecord,
    RunSpec,
    ToWrite,
    UseMasker,
    WarmGeometry,
    describe,
)
from .run_geometry import IF_MISORIENTED, check_run_geometry

if TYPE_CHECKING:  # xarray, pydantic and pyFAI load with the first run, not on import
    from ..azimuthal import IntegrationSettings
    from ..azimuthal.orientation import Orientation
    from .process import FrameResult, Pipeline

__all__ = ["ComputeStage"]

# the worker's log: ``xrd-mask watch`` sets its level by this name
log = logging.getLogger("xrd_bluesky_mask.pipeline.worker")


class ComputeStage:
    """The runs' pipelines and masker, and what the compute stage does with each item.

    Parameters
    ----------
    records
        run uid → `RunRecord`, the worker's: run-level errors go there.
    masker
        Masker name, instance, or None for the U-Net; built on first use (`masker`).
    integration
        `IntegrationSettings` shared by every run's pipeline, or None for the defaults.
    policy
        The `ExecutionPolicy` each pipeline resolves against its masker.
    tables
        Compute each frame's tables with its mask and pattern.
    if_misoriented
        One of `IF_MISORIENTED` (`xrd_bluesky_mask.pipeline.run_geometry`).
    """

    def __init__(self, records: dict[str, RunRecord], *, masker: Masker | str | None,
                 integration: IntegrationSettings | None, policy: ExecutionPolicy,
                 tables: bool, if_misoriented: str) -> None:
        if if_misoriented not in IF_MISORIENTED:
            raise ConfigError(f"if_misoriented must be one of {', '.join(IF_MISORIENTED)}, "
                              f"got {if_misoriented!r}")
        self.records = records
        self.if_misoriented = if_misoriented
        self.policy = policy
        self.integration = integration
        self.tables = bool(tables)
        self.pipelines: dict[str, Pipeline] = {}  # run uid -> its pipeline
        self._masker_spec: Masker | str | None = masker
        self._masker: Masker | None = None
        self._masker_error: str | None = None
        self._pending_masker: Masker | None = None  # from set_masker, for the next run

    def masker(self) -> Masker:
        """The masker instance (built on first call)."""
        if self._masker is None and self._masker_error is None:
            from ..masking import get_masker

            try:
                self._masker = get_masker(self._masker_spec)
            except Exception as exc:
                self._masker_error = f"masker {self._masker_spec!r} unusable: {describe(exc)}"
                log.error("xrd-mask: %s", self._masker_error)
        if self._masker is None:
            raise RunFailed(self._masker_error)
        return self._masker

    def batch_size(self, run_uid: str) -> int:
        """Frames per compute step for this run (1 until its pipeline exists)."""
        pipeline = self.pipelines.get(run_uid)
        return pipeline.batch if pipeline is not None else 1

    def forget(self, run_uid: str) -> None:
        """The run closed: its pipeline goes."""
        self.pipelines.pop(run_uid, None)

    def step(self, got: OpenRun | CloseRun | UseMasker | WarmGeometry) -> list[ToWrite]:
        """The compute stage's part in a run step: open the run's pipeline, take up a masker,
        warm a geometry, pass a close on; what goes on to the write stage."""
        if isinstance(got, WarmGeometry):
            self._prewarm(got)
            return [got]
        if isinstance(got, OpenRun):
            try:
                return [Opened(got, self._open(got.spec))]
            except Exception as exc:
                return [Opened(got, Failure(exc))]
        if isinstance(got, UseMasker):  # taken up by the next OpenRun
            self._pending_masker = got.masker
        return [got]

    def _open(self, spec: RunSpec) -> dict[str, Any]:
        from ..azimuthal import IntegrationSettings
        from ..geometry import as_geometry

        record = self.records.setdefault(spec.uid, RunRecord(spec=spec))
        record.t_open = time.perf_counter()
        if self._pending_masker is not None:
            self._masker = self._masker_spec = self._pending_masker
            self._pending_masker, self._masker_error = None, None
        try:
            settings = self.masker().settings()
        except Exception as exc:
            settings = {"masker": str(self._masker_spec), "error": str(exc)}
            record.run_errors.append(str(exc))
        if spec.poni is None:
            record.run_errors.append(
                f"no detector geometry for run {spec.uid}: the start document has no "
                "'xrd_mask_poni', no device configuration holds a PONI, and the callback was "
                "given none. Pass poni=... to XRDMaskCallback or add md={'xrd_mask_poni': ...}."
            )
        elif not record.run_errors:
            try:
                self.pipelines[spec.uid] = self._pipeline(
                    self.masker(), as_geometry(spec.poni, spec.shape,
                                               source=spec.geometry_source or None))
            except Exception as exc:
                record.run_errors.append(f"geometry unusable: {describe(exc)}")
            else:
                self._warm(spec.uid, self.pipelines[spec.uid])
        integration = self.integration or IntegrationSettings()
        return provenance(spec.uid, stream=spec.stream, field=spec.field,
                          masker_settings=settings, poni=spec.poni or "",
                          integration=integration.model_dump(mode="json"),
                          frames_expected=spec.frames_expected, frame_shape=spec.shape)

    def _pipeline(self, masker: Masker, geometry: Any,
                  orientation: Orientation | None = None) -> Pipeline:
        """A run's pipeline with this stage's integration, policy and tables."""
        from .process import Pipeline

        return Pipeline(masker, geometry, self.integration, policy=self.policy,
                        tables=self.tables, orientation=orientation)

    def _prewarm(self, item: WarmGeometry) -> None:
        """Warm the geometry a run's start document names, with the masker its `OpenRun`
        will take up (the run's own opening then finds it warm). Nothing is recorded on
        failure: opening the run checks the same geometry and says what is wrong."""
        from ..geometry import as_geometry

        try:
            masker = self._pending_masker or self.masker()
            geometry = as_geometry(item.poni, item.shape, source=item.source or None)
        except Exception as exc:
            log.debug("xrd-mask: run %s: nothing warmed from its start document (%s)",
                      item.run_uid, describe(exc))
            return
        self._warm(item.run_uid, self._pipeline(masker, geometry))

    @staticmethod
    def _warm(run_uid: str, pipeline: Pipeline) -> None:
        """Build the run's engine and geometry tables now, before its first frame (a failure
        only means the first frame builds them)."""
        try:
            seconds = pipeline.warm()
        except Exception as exc:
            log.warning("xrd-mask: run %s: warming up failed (%s); the first frame builds "
                        "what it needs", run_uid, describe(exc))
            return
        if seconds:
            log.info("xrd-mask: run %s: engine and geometry tables built in %.2f s, before "
                     "its first frame", run_uid, seconds)

    def compute(self, group: list[FrameRead]) -> list[Computed]:
        """Results of frames of one run (read), masked together; one by one if the batch
        fails."""
        run_uid = group[0].item.run_uid
        pipeline = self.pipelines.get(run_uid)
        if pipeline is None:  # the run's own reason, recorded when it was opened
            errors = self.records[run_uid].run_errors if run_uid in self.records else []
            reason = errors[0] if errors else f"no usable geometry for run {run_uid}"
            return [Computed(one.item, Failure(RunFailed(reason))) for one in group]
        frames = [one.frame for one in group if not isinstance(one.frame, Failure)]
        pipeline = self.check_geometry(run_uid, pipeline, frames[0])
        if pipeline is None:  # refused: no mask in an orientation that does not fit
            reason = self.records[run_uid].run_errors[0]
            return [Computed(one.item, Failure(RunFailed(reason))) for one in group]
        try:
            results: list[FrameResult | Failure] = list(pipeline.process(frames))
        except Exception as exc:
            if len(group) == 1:
                return [Computed(group[0].item, Failure(exc), group[0].seconds)]
            log.warning("xrd-mask: batch of %d frames of run %s failed (%s); one by one",
                        len(group), run_uid, describe(exc))
            return [one for read in group for one in self.compute([read])]
        return [Computed(one.item, result, one.seconds, len(group))
                for one, result in zip(group, results, strict=True)]

    def check_geometry(self, run_uid: str, pipeline: Pipeline, frame: np.ndarray
                       ) -> Pipeline | None:
        """The run's geometry check, once, on its first frame (`check_run_geometry`): the
        pipeline to use from now on, or None when the run is refused."""
        used = check_run_geometry(
            run_uid, self.records.setdefault(run_uid, RunRecord()), pipeline, frame,
            if_misoriented=self.if_misoriented,
            turned=lambda better: self._pipeline(pipeline.masker, pipeline.geometry, better))
        if used is None:
            self.pipelines.pop(run_uid, None)
        elif used is not pipeline:
            self.pipelines[run_uid] = used
        return used
