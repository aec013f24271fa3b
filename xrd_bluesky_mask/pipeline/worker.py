"""The background worker: read frames, mask and integrate them, write the results.

Three daemon threads form a pipeline so that Tiled reads, computation and Tiled writes overlap:

``submit`` → (unbounded queue) → **read** (`FrameSource.read`, waits until the frame is
readable) → (``prefetch`` frames) → **compute** (`Pipeline.process`: mask + integrate, and
the frame's spot table, summary and texture rows) →
(``prefetch`` results) → **write** (`ResultSink`).

The compute stage keeps one `Pipeline` per open run (its geometry) and takes the frames of that
run that are already waiting, up to the policy's batch (never waiting for more): a masker that
masks batches (the U-Net) gets them in one call, on a GPU one network pass and one copy.

`Worker.submit` never blocks and never drops work: items are a few bytes naming data that
already lives in Tiled.

Yielding to the scan: the Tiled server, the CPU cores and (in-process) the GIL are shared with
the RunEngine and TiledWriter. With ``quiet_s > 0`` every stage waits, before its next item,
until no document has been seen (`Worker.poke`) for ``quiet_s`` seconds: the worker works in
the gaps between the RunEngine's bursts of documents (detector exposures, moves) and catches
up after the stop document. A scan that emits documents back to back is then processed after
it, not during it; ``quiet_s=0`` processes at once, at the price of slowing such scans.
``quiet_s="auto"`` (the live callback's default) waits `AUTO_QUIET_S` while the scan's frames
come back to back (the mean interval of the last 5 frames announced shorter than
`AUTO_FAST_S`), and processes at once otherwise (exposures or moves leave the cores idle
between frames, so a frame's result follows it within its compute time; also before it knows,
fewer than 2 frames announced, so a scan's first frame is never held back). Whether the worker
keeps up is no guide: at 512 px with back-to-back frames it masked as fast as the scan ran and
still made it 1.8-2.2x longer. Measured with `benchmarks/bench_live.py` (1024 px,
classical masker, 6 frames, 2 shared cores): with 1 s exposures the scan took 1.22-1.24x
TiledWriter alone with ``quiet_s`` 0.5, 0.2 or 0 alike, and the median latency was 3.0 s with
0.5, 2.8 s with 0.2 and 0.54-0.57 s with 0; with back-to-back frames (no exposure) 1.02x with
0.5 and 1.75-2.9x with 0.

Items of a run keep their order through the pipeline, so a run's `CloseRun` is written after
its last frame. A failing frame is recorded (index → error) and the
others go on; run-level failures (no geometry, masker or sink unusable) make the run ``failed``.
A scan that stopped with another exit status than ``success`` is closed ``aborted`` (the stop
document's exit status and reason recorded as ``scan_exit_status``, ``scan_reason``).

With a `Journal` the write stage hands every result to a `JournaledSink`: kept on disk first,
then written by its own thread with back-off through outages of the store, and replayed after
a restart (`xrd_bluesky_mask.sinks.journaled`). `wait` and `close` wait for it too. How far
the worker is behind the scan is reported on the derived node and in the log
(`xrd_bluesky_mask.pipeline.lag`).
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

import numpy as np

from ..errors import ConfigError, JournalFull, RunFailed
from ..protocols import ExecutionPolicy, FrameSource, Masker, ResultSink
from ..provenance import provenance
from ..sinks.journal import Journal
from ..sinks.journaled import JournaledSink
from .items import (
    CloseRun,
    Computed,
    Failure,
    FrameItem,
    FrameRead,
    FrameRecord,
    Opened,
    OpenRun,
    RunRecord,
    RunSpec,
    ToCompute,
    ToWrite,
    UseMasker,
    WorkItem,
)
from .lag import LagMeter

if TYPE_CHECKING:  # xarray, pydantic and pyFAI load with the first run, not on import
    from ..azimuthal import IntegrationSettings
    from .fanout import FanOut
    from .process import FrameResult, Pipeline

__all__ = ["AUTO_FAST_S", "AUTO_QUIET_S", "IF_MISORIENTED", "Listener", "Worker"]

#: Told ``(run uid, frame index, its summary row)`` once a frame's results are handed to the
#: sink (the row: `xrd_bluesky_mask.spots.summary.SUMMARY_COLUMNS`; empty without tables),
#: and ``(run uid, None, {"status": ...})`` once the run is closed. Called on the write thread.
Listener: TypeAlias = "Callable[[str, int | None, dict[str, Any]], None]"

log = logging.getLogger(__name__)

#: Seconds without documents a stage waits for with ``quiet_s="auto"`` while frames come fast.
AUTO_QUIET_S = 0.5
#: Frames announced closer than this (mean of the last 5), s, count as back to back.
AUTO_FAST_S = 1.0
#: What a run whose frames fit the PONI only once turned becomes (see `Worker`).
IF_MISORIENTED = ("refuse", "apply", "keep")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Worker:
    """Drains work items in background threads (see the module docstring).

    Parameters
    ----------
    source
        A `FrameSource` (e.g. `TiledFrameSource`).
    sink
        A `ResultSink` (e.g. `TiledResultSink`).
    masker
        Masker name (``"unet"``, ``"classical"``, a plugin), instance, or None for the U-Net;
        built on first use in the compute thread.
    integration
        `IntegrationSettings` (one per worker, so pyFAI's engine is reused), or None.
    prefetch
        Frames read ahead of the computation, and results waiting to be written.
    niceness
        Added to the worker threads' nice value on Linux (lower CPU priority than the
        RunEngine); 0 leaves it.
    quiet_s
        Seconds without documents before a stage takes its next item (see "Yielding to the
        scan" above); 0 disables; ``"auto"``: `AUTO_QUIET_S` while frames come back to back
        (less than `AUTO_FAST_S` apart), else 0.
    batch
        Most frames masked together (maskers that mask batches); 1 = one by one.
        ``"auto"``: 4 when the U-Net runs on a GPU, 1 on a CPU (where batches gain nothing).
        The other device-side choices (tiling, precision, where to integrate) are the
        masker's (`xrd_bluesky_mask.pipeline.policy.resolve`).
    journal
        A `Journal`: results are kept there and written to ``sink`` by a `JournaledSink`
        (through outages, and after a restart); None writes to ``sink`` directly.
    tables
        Compute and write each frame's tables (spot table, summary, ring texture:
        `xrd_bluesky_mask.spots`) with its mask and pattern.
    retry_max_wait
        The journal's longest wait between attempts while the store is unreachable, seconds.
    if_misoriented
        What a run becomes when the geometry check (on its first frame) is decisive that the
        frames fit the PONI only once turned (flipped or transposed): ``"refuse"`` (default:
        no mask is written in an orientation that does not fit; the run is ``failed`` with the
        reason, and ``xrd-mask reprocess`` can redo it), ``"apply"`` (masked in the orientation
        that fits, recorded as ``orientation_applied`` on the run and logged; masks and spot
        positions stay in the stored frame's orientation) or ``"keep"`` (masked as given,
        with the warning on the run). One of `IF_MISORIENTED`.
    dask
        A `distributed.Client`: frames are masked and integrated on its cluster, results
        written here in frame order (`xrd_bluesky_mask.pipeline.fanout`); None: in this
        process. Make it with ``set_as_default=False``, so this process's own Dask reads (the
        Tiled client's) stay here.
    per_thread
        With ``dask``: frames in flight per Dask worker thread (the backpressure bound).
    """

    def __init__(self, source: FrameSource, sink: ResultSink, *,
                 masker: Masker | str | None = None,
                 integration: IntegrationSettings | None = None, prefetch: int = 2,
                 niceness: int = 5, quiet_s: float | str = 0.0, batch: int | str = "auto",
                 journal: Journal | None = None, retry_max_wait: float = 10.0,
                 tables: bool = True, if_misoriented: str = "refuse", dask: Any = None,
                 per_thread: int = 2) -> None:
        if batch != "auto" and (not isinstance(batch, int) or batch < 1):
            raise ConfigError(f"batch must be 'auto' or an int >= 1, got {batch!r}")
        if if_misoriented not in IF_MISORIENTED:
            raise ConfigError(f"if_misoriented must be one of {', '.join(IF_MISORIENTED)}, "
                              f"got {if_misoriented!r}")
        self.if_misoriented = if_misoriented
        self.batch = batch
        self.policy = ExecutionPolicy(batch=batch)
        self._pipelines: dict[str, Pipeline] = {}  # run uid -> its pipeline
        self.source, self.sink = source, sink
        self.journaled: JournaledSink | None = None
        if journal is not None:
            self.sink = self.journaled = JournaledSink(sink, journal, on_error=self._sink_error,
                                                       max_wait=retry_max_wait)
        self.lag = LagMeter()
        if isinstance(quiet_s, str) and quiet_s != "auto":
            raise ConfigError(f"quiet_s must be 'auto' or seconds >= 0, got {quiet_s!r}")
        self.quiet_s: float | str = quiet_s if quiet_s == "auto" else float(quiet_s)
        self._last_doc = 0.0
        self._announced: collections.deque[float] = collections.deque(maxlen=5)
        self._masker_spec: Masker | str | None = masker
        self._masker: Masker | None = None
        self._masker_error: str | None = None
        self._pending_masker: Masker | None = None  # from set_masker, for the next run
        self.integration = integration
        self.tables = bool(tables)
        self.niceness = niceness
        self.records: dict[str, RunRecord] = {}
        # the stages' queues; None tells the next stage to stop
        self._inbox: queue.SimpleQueue[WorkItem | None] = queue.SimpleQueue()
        depth = max(prefetch, batch if isinstance(batch, int) else 4, 1)
        self._to_compute: queue.Queue[ToCompute] = queue.Queue(maxsize=depth)
        self._to_write: queue.Queue[ToWrite] = queue.Queue(maxsize=max(prefetch, 1))
        self._pending = 0
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.fanout: FanOut | None = None
        if dask is not None:
            from .fanout import FanOut

            self.fanout = FanOut(self, dask, per_thread=per_thread)
        self._listeners: list[Listener] = []

    # -- public -------------------------------------------------------------------------
    def start(self) -> Worker:
        """Start the threads (idempotent)."""
        if not self._threads:
            for name, target in (("read", self._read_loop), ("compute", self._compute_loop),
                                 ("write", self._write_loop)):
                t = threading.Thread(target=self._run_stage, args=(target,),
                                     name=f"xrd-mask-{name}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def submit(self, item: WorkItem) -> None:
        """Queue an item; never blocks. Items after `close` are ignored (logged)."""
        if self._closed:
            log.warning("xrd-mask worker is closed; ignoring %s", item)
            return
        if isinstance(item, OpenRun):
            self.records.setdefault(item.spec.uid, RunRecord()).spec = item.spec
        elif isinstance(item, FrameItem):
            self.lag.announced(item.run_uid, item.index)
            self._announced.append(time.monotonic())
        with self._cond:
            self._pending += 1
        self._inbox.put(item)

    def add_listener(self, listener: Listener) -> None:
        """Tell ``listener`` about every frame written and run closed (see `Listener`); a
        listener that raises is logged and kept."""
        self._listeners.append(listener)

    def _notify(self, run_uid: str, index: int | None, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(run_uid, index, payload)
            except Exception:
                log.exception("xrd-mask: a result listener failed on run %s", run_uid)

    def poke(self) -> None:
        """Note that the RunEngine just emitted a document (called by the callback)."""
        self._last_doc = time.monotonic()

    def quiet(self) -> float:
        """The seconds without documents a stage waits for now (``quiet_s``; for ``"auto"``
        `AUTO_QUIET_S` while frames come less than `AUTO_FAST_S` apart, else 0)."""
        if self.quiet_s != "auto":
            return float(self.quiet_s)
        times = list(self._announced)
        if len(times) < 2:  # nothing says the frames come back to back
            return 0.0
        interval = (times[-1] - times[0]) / (len(times) - 1)
        return AUTO_QUIET_S if interval < AUTO_FAST_S else 0.0

    def _yield(self) -> None:
        """Wait until no document has been seen for `quiet` seconds."""
        while (quiet := self.quiet()) > 0:
            idle = time.monotonic() - self._last_doc
            if idle >= quiet or self._closed:
                return
            time.sleep(quiet - idle)

    def note_run_error(self, run_uid: str, message: str) -> None:
        """Record a run-level error (e.g. from the callback) shown on the derived node."""
        self.records.setdefault(run_uid, RunRecord()).run_errors.append(message)

    @property
    def closed(self) -> bool:
        """True once `close` has begun (reads waiting out an outage give up then)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Items submitted and not yet fully processed."""
        with self._cond:
            return self._pending

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted item is processed and its results are written (out of
        the journal); False if ``timeout`` s passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending == 0, timeout=timeout):
                return False
        if self.journaled is None:
            return True
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.journaled.wait(left)

    def close(self, timeout: float | None = None) -> bool:
        """Finish the queued work (up to ``timeout`` s), then stop and join the threads.
        Results still in the journal stay there (logged) for the next start."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            finished = self._cond.wait_for(lambda: self._pending == 0, timeout=timeout)
        self._closed = True
        if self._threads:
            self._inbox.put(None)
            for t in self._threads:
                t.join(timeout=5.0 if finished else 0.5)
            self._threads = []
        if self.journaled is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished = self.journaled.close(left) and finished
        return finished

    def _sink_error(self, run_uid: str, index: int | None, message: str) -> None:
        """A result the journal could not write (permanently): into the run's record."""
        record = self.records.setdefault(run_uid, RunRecord())
        if index is None:
            record.run_errors.append(message)
            record.status = "failed"
        else:
            record.frames.setdefault(index, FrameRecord(index)).error = message

    def set_masker(self, masker: Masker | str | None) -> Masker:
        """Use ``masker`` (a name, an instance, or None for the active U-Net model) from the
        next run opened after this call; a run already open keeps its masker (the change travels
        through the queue in order). Built here, so an unusable masker raises now and changes
        nothing. Thread-safe; returns the masker instance."""
        from ..masking import get_masker

        built = get_masker(masker)
        self.submit(UseMasker(built))
        return built

    def masker(self) -> Masker:
        """The masker instance (built on first call)."""
        if self._masker is None and self._masker_error is None:
            from ..masking import get_masker

            try:
                self._masker = get_masker(self._masker_spec)
            except Exception as exc:
                self._masker_error = f"masker {self._masker_spec!r} unusable: {_describe(exc)}"
                log.error("xrd-mask: %s", self._masker_error)
        if self._masker is None:
            raise RunFailed(self._masker_error)
        return self._masker

    # -- stages -------------------------------------------------------------------------
    def _run_stage(self, loop: Callable[[], None]) -> None:
        if self.niceness and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness
                               + os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            except OSError:
                pass
        loop()

    def _done(self, n: int = 1) -> None:
        with self._cond:
            self._pending -= n
            self._cond.notify_all()

    def _read_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                self._to_compute.put(None)
                return
            if not isinstance(item, FrameItem):
                self._to_compute.put(item)
                continue
            record = self.records.get(item.run_uid)
            if record is not None and record.run_errors:
                self._to_compute.put(FrameRead(item, Failure(RunFailed(record.run_errors[0]))))
                continue
            self._yield()
            t0 = time.perf_counter()
            try:
                frame = self.source.read(item.run_uid, item.stream, item.field, item.index)
                self._to_compute.put(FrameRead(item, frame, time.perf_counter() - t0))
            except Exception as exc:
                log.warning("xrd-mask: frame %d of %s not read: %s", item.index,
                            item.run_uid, _describe(exc))
                self._to_compute.put(FrameRead(item, Failure(exc)))

    def _batch_size(self, run_uid: str) -> int:
        """Frames per compute step for this run (1 until its pipeline exists)."""
        pipeline = self._pipelines.get(run_uid)
        return pipeline.batch if pipeline is not None else 1

    @staticmethod
    def _joins(got: ToCompute, run_uid: str) -> TypeGuard[FrameRead]:
        """``got`` is a frame of ``run_uid`` read and ready to mask with the others."""
        return (isinstance(got, FrameRead) and got.item.run_uid == run_uid
                and not isinstance(got.frame, Failure))

    def _compute_loop(self) -> None:
        if self.fanout is not None:  # on the Dask cluster, in frame order
            self.fanout.run()
            return
        carry: ToCompute = None
        while True:
            got, carry = (carry, None) if carry is not None else (self._to_compute.get(), None)
            if got is None:
                self._to_write.put(None)
                return
            self._yield()
            if isinstance(got, FrameRead):
                if isinstance(got.frame, Failure):
                    self._to_write.put(Computed(got.item, got.frame))
                    continue
                group, size = [got], self._batch_size(got.item.run_uid)
                while len(group) < size:
                    try:
                        nxt = self._to_compute.get_nowait()
                    except queue.Empty:
                        break
                    if not self._joins(nxt, got.item.run_uid):
                        carry = nxt
                        break
                    group.append(nxt)
                for computed in self._compute(group):
                    self._to_write.put(computed)
            else:
                for out in self._step(got):
                    self._to_write.put(out)

    def _step(self, got: OpenRun | CloseRun | UseMasker) -> list[ToWrite]:
        """The compute stage's part in a run step: open the run's pipeline, take up a masker,
        pass a close on; what goes on to the write stage."""
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
        from .process import Pipeline

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
                self._pipelines[spec.uid] = Pipeline(
                    self.masker(), as_geometry(spec.poni, spec.shape,
                                               source=spec.geometry_source or None),
                    self.integration,
                    policy=self.policy, tables=self.tables)
            except Exception as exc:
                record.run_errors.append(f"geometry unusable: {_describe(exc)}")
            else:
                self._warm(spec.uid, self._pipelines[spec.uid])
        integration = self.integration or IntegrationSettings()
        return provenance(spec.uid, stream=spec.stream, field=spec.field,
                          masker_settings=settings, poni=spec.poni or "",
                          integration=integration.model_dump(mode="json"),
                          frames_expected=spec.frames_expected, frame_shape=spec.shape)

    @staticmethod
    def _warm(run_uid: str, pipeline: Pipeline) -> None:
        """Build the run's engine and geometry tables now, before its first frame (a failure
        only means the first frame builds them)."""
        try:
            seconds = pipeline.warm()
        except Exception as exc:
            log.warning("xrd-mask: run %s: warming up failed (%s); the first frame builds "
                        "what it needs", run_uid, _describe(exc))
            return
        if seconds:
            log.info("xrd-mask: run %s: engine and geometry tables built in %.2f s, before "
                     "its first frame", run_uid, seconds)

    def _compute(self, group: list[FrameRead]) -> list[Computed]:
        """Results of frames of one run (read), masked together; one by one if the batch
        fails."""
        run_uid = group[0].item.run_uid
        pipeline = self._pipelines.get(run_uid)
        if pipeline is None:  # the run's own reason, recorded when it was opened
            errors = self.records[run_uid].run_errors if run_uid in self.records else []
            reason = errors[0] if errors else f"no usable geometry for run {run_uid}"
            return [Computed(one.item, Failure(RunFailed(reason))) for one in group]
        frames = [one.frame for one in group if not isinstance(one.frame, Failure)]
        pipeline = self._check_geometry(run_uid, pipeline, frames[0])
        if pipeline is None:  # refused: no mask in an orientation that does not fit
            reason = self.records[run_uid].run_errors[0]
            return [Computed(one.item, Failure(RunFailed(reason))) for one in group]
        try:
            results: list[FrameResult | Failure] = list(pipeline.process(frames))
        except Exception as exc:
            if len(group) == 1:
                return [Computed(group[0].item, Failure(exc), group[0].seconds)]
            log.warning("xrd-mask: batch of %d frames of run %s failed (%s); one by one",
                        len(group), run_uid, _describe(exc))
            return [one for read in group for one in self._compute([read])]
        return [Computed(one.item, result, one.seconds, len(group))
                for one, result in zip(group, results, strict=True)]

    def _check_geometry(self, run_uid: str, pipeline: Pipeline, frame: np.ndarray
                        ) -> Pipeline | None:
        """Once per run, on its first frame: do the PONI's rings fit the frame (orientation,
        beam centre)? The verdict goes to the run's metadata and a misfit to the log; when
        another orientation clearly fits, ``if_misoriented`` decides. Returns the pipeline to
        use, or None when the run is refused."""
        from ..azimuthal.geometry_check import check_geometry

        record = self.records.setdefault(run_uid, RunRecord())
        if record.geometry_check is not None:
            return None if record.run_errors else pipeline
        try:
            verdict = check_geometry(frame, pipeline.geometry, orientation=pipeline.orientation)
        except Exception as exc:  # the check only advises: never fail a frame over it
            record.geometry_check = {"status": "not checked", "reason": _describe(exc)}
            return pipeline
        record.geometry_check = verdict.as_metadata()
        warning = verdict.warning()
        better = verdict.better_orientation
        if better is not None and self.if_misoriented == "refuse":
            record.run_errors.append(
                f"refused: {warning} No mask was written for this run: `xrd-mask "
                f"reprocess {run_uid} --if-misoriented apply` masks it in the orientation "
                "that fits (live masking: if_misoriented='apply', or --if-misoriented apply).")
            log.error("xrd-mask: run %s %s", run_uid, record.run_errors[-1])
            self._pipelines.pop(run_uid, None)
            return None
        if better is not None and self.if_misoriented == "apply":
            from .process import Pipeline

            # a candidate orientation keeps the frame's shape (square frames only transpose)
            turned = Pipeline(pipeline.masker, pipeline.geometry, self.integration,
                              policy=self.policy, tables=self.tables, orientation=better)
            self._pipelines[run_uid] = turned
            record.geometry_check = {
                **check_geometry(frame, turned.geometry, orientation=better).as_metadata(),
                "orientation_applied": better.name, "orientation_asked": pipeline.orientation.name,
                "first_verdict": verdict.as_metadata()}
            log.warning("xrd-mask: run %s: %s Masked in orientation %r instead (the rings are "
                        "sharper; if_misoriented='apply').", run_uid, warning, better.name)
            return turned
        if warning:
            log.warning("xrd-mask: run %s: %s", run_uid, warning)
        return pipeline

    def _write_loop(self) -> None:
        while True:
            got = self._to_write.get()
            if got is None:
                return
            self._yield()
            try:
                if isinstance(got, Opened):
                    self._write_open(got)
                elif isinstance(got, Computed):
                    self._write_frame(got)
                elif isinstance(got, CloseRun):
                    self._close(got)
            except Exception:  # never let the writer thread die
                log.exception("xrd-mask: unexpected error handling %s", got)
            finally:
                self._done()

    def _write_open(self, opened: Opened) -> None:
        uid = opened.item.spec.uid
        record = self.records[uid]
        record.status = "running"
        if isinstance(opened.metadata, Failure):
            record.run_errors.append(opened.metadata.message)
            return
        try:
            self.sink.open_run(uid, opened.metadata)
        except Exception as exc:
            log.error("xrd-mask: results of run %s cannot be written (%s); recover them "
                      "with `xrd-mask reprocess %s` once the result store accepts them",
                      uid, _describe(exc), uid)
            record.sink_failed = True
            record.run_errors.insert(0, f"results not written: {_describe(exc)}")

    def _write_frame(self, computed: Computed) -> None:
        item = computed.item
        record = self.records.setdefault(item.run_uid, RunRecord())
        rec = FrameRecord(item.index)
        record.frames[item.index] = rec
        try:
            result = computed.result
            if isinstance(result, Failure):
                rec.error = result.message
                log.warning("xrd-mask: frame %d of run %s failed: %s", item.index,
                            item.run_uid, rec.error)
                return
            rec.spot_fraction = result.mask.spot_fraction
            rec.static_fraction = float(np.mean(result.mask.static))
            t0 = time.perf_counter()
            tables = None
            try:
                tables = result.tables.at(item.index) if result.tables is not None else None
                self.sink.write(item.run_uid, item.index, result.mask.codes, result.pattern,
                                tables=tables)
            except JournalFull as exc:
                rec.error = f"result not kept: {exc}"
                if not record.journal_full:  # once per run: every later frame says it too
                    log.error("xrd-mask: %s", exc)
                record.journal_full = True
            except Exception as exc:
                rec.error = f"result not written: {_describe(exc)}"
                log.warning("xrd-mask: frame %d of run %s: %s", item.index, item.run_uid,
                            rec.error)
            t1 = time.perf_counter()
            rec.timings = {"read": computed.read_s, "mask": result.timings["mask"],
                           "integrate": result.timings["integrate"],
                           "tables": result.timings.get("tables", 0.0),
                           "batch": computed.batch, "write": t1 - t0,
                           "latency": t1 - item.t_submitted}
            if rec.error is None and self._listeners:
                row = dict(tables.summary) if tables is not None else {}
                self._notify(item.run_uid, item.index, row)
        finally:
            cost = (computed.result.timings.get("total")
                    if not isinstance(computed.result, Failure) else None)
            report = self.lag.finished(item.run_uid, item.t_submitted, cost_s=cost,
                                       workers=self._compute_threads()) or {}
            if record.geometry_check is not None and not record.geometry_noted:
                report = {**report, "geometry_check": record.geometry_check}
                record.geometry_noted = True
            if report and not record.sink_failed:
                self._annotate(item.run_uid, report)

    def _compute_threads(self) -> int:
        """Threads masking frames: the Dask workers' (while the cluster is used), else 1."""
        fanout = self.fanout
        if fanout is None or not fanout.active:
            return 1
        return max(1, sum(fanout.threads.values()))

    def _annotate(self, run_uid: str, fields: dict[str, Any]) -> None:
        """Progress fields for the run's metadata (a failure is logged, never the run's)."""
        try:
            self.sink.annotate(run_uid, fields)
        except Exception as exc:
            log.warning("xrd-mask: progress of run %s not recorded: %s", run_uid,
                        _describe(exc))

    def _close(self, item: CloseRun) -> None:
        record = self.records.setdefault(item.run_uid, RunRecord())
        record.exit_status, record.t_close = item.exit_status, time.perf_counter()
        errors: dict[Any, str] = dict(record.errors)
        scan_stopped = item.exit_status not in ("success", "reprocess", "")
        if record.run_errors:
            status = "failed"
            errors["run"] = "; ".join(record.run_errors)
        elif scan_stopped:
            status = "aborted"
        else:
            status = "complete_with_errors" if errors else "complete"
        record.status = status
        n_frames = item.n_frames if item.n_frames is not None else self.lag.frames_seen(
            item.run_uid)
        self.lag.forget(item.run_uid)
        self._pipelines.pop(item.run_uid, None)
        self.source.forget(item.run_uid)
        self._notify(item.run_uid, None, {"status": status})
        if record.sink_failed:
            return  # the sink never opened this run
        fields: dict[str, Any] = {"n_frames": n_frames, "lag_frames": 0}
        if item.exit_status != "reprocess":
            fields.update(scan_exit_status=item.exit_status or None,
                          scan_reason=item.reason or None)
        self._annotate(item.run_uid, fields)
        try:
            self.sink.close_run(item.run_uid, status, errors)
        except Exception as exc:
            log.error("xrd-mask: could not finish results of run %s: %s", item.run_uid,
                      _describe(exc))
            record.run_errors.append(f"close failed: {_describe(exc)}")
        log.info("xrd-mask: run %s %s (%d frames done, %d failed%s)", item.run_uid, status,
                 len(record.done), len(record.errors),
                 f"; scan {item.exit_status}: {item.reason}" if scan_stopped else "")
