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

Yielding to the scan (``quiet_s``): every stage waits, before its next item, for a gap in
the RunEngine's documents (`xrd_bluesky_mask.pipeline.quiet`).

Items of a run keep their order through the pipeline, so a run's `CloseRun` is written after
its last frame. A failing frame is recorded (index → error) and the others go on; run-level
failures (no geometry, masker or sink unusable, a misoriented run refused:
`xrd_bluesky_mask.pipeline.run_geometry`) make the run ``failed``. The write stage and the run
statuses are `xrd_bluesky_mask.pipeline.writer`'s; with a `Journal` it writes through a
`JournaledSink`, and `wait` and `close` wait for that too.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from ..errors import ConfigError, RunFailed
from ..protocols import ExecutionPolicy, FrameSource, Masker, ResultSink
from ..sinks.journal import Journal
from ..sinks.journaled import JournaledSink
from .compute import ComputeStage
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
    ToCompute,
    ToWrite,
    UseMasker,
    WorkItem,
    describe,
)
from .lag import LagMeter
from .quiet import QuietGaps
from .writer import Listener, ResultWriter

if TYPE_CHECKING:  # xarray, pydantic and pyFAI load with the first run, not on import
    from ..azimuthal import IntegrationSettings
    from .fanout import FanOut

__all__ = ["Worker"]

log = logging.getLogger(__name__)


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
        Seconds without documents before a stage takes its next item; 0 disables; ``"auto"``
        waits only while frames come back to back (`QuietGaps`).
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
        with the warning on the run). One of
        `xrd_bluesky_mask.pipeline.run_geometry.IF_MISORIENTED`.
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
        self.batch = batch
        self.records: dict[str, RunRecord] = {}
        self.compute = ComputeStage(self.records, masker=masker, integration=integration,
                                    policy=ExecutionPolicy(batch=batch), tables=tables,
                                    if_misoriented=if_misoriented)
        self.source, self.sink = source, sink
        self.journaled: JournaledSink | None = None
        if journal is not None:
            self.sink = self.journaled = JournaledSink(sink, journal, on_error=self._sink_error,
                                                       max_wait=retry_max_wait)
        self.lag = LagMeter()
        self.gaps = QuietGaps(quiet_s)
        self.niceness = niceness
        self.writer = ResultWriter(self.sink, self.records, self.lag,
                                   compute_threads=self._compute_threads, forget=self._forget)
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
            self.gaps.frame_announced()
        with self._cond:
            self._pending += 1
        self._inbox.put(item)

    def add_listener(self, listener: Listener) -> None:
        """Tell ``listener`` about every frame written and run closed (see `Listener`); a
        listener that raises is logged and kept."""
        self.writer.listeners.append(listener)

    def poke(self) -> None:
        """Note that the RunEngine just emitted a document (called by the callback)."""
        self.gaps.poke()

    def _yield(self) -> None:
        """Wait for a gap in the scan's documents (`QuietGaps.wait`), or until `close`."""
        self.gaps.wait(lambda: self._closed)

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
                            item.run_uid, describe(exc))
                self._to_compute.put(FrameRead(item, Failure(exc)))

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
                group, size = [got], self.compute.batch_size(got.item.run_uid)
                while len(group) < size:
                    try:
                        nxt = self._to_compute.get_nowait()
                    except queue.Empty:
                        break
                    if not self._joins(nxt, got.item.run_uid):
                        carry = nxt
                        break
                    group.append(nxt)
                for computed in self.compute.compute(group):
                    self._to_write.put(computed)
            else:
                for out in self.compute.step(got):
                    self._to_write.put(out)

    def _write_loop(self) -> None:
        while True:
            got = self._to_write.get()
            if got is None:
                return
            self._yield()
            try:
                if isinstance(got, Opened):
                    self.writer.open(got)
                elif isinstance(got, Computed):
                    self.writer.frame(got)
                elif isinstance(got, CloseRun):
                    self.writer.close(got)
            except Exception:  # never let the writer thread die
                log.exception("xrd-mask: unexpected error handling %s", got)
            finally:
                self._done()

    def _compute_threads(self) -> int:
        """Threads masking frames: the Dask workers' (while the cluster is used), else 1."""
        fanout = self.fanout
        if fanout is None or not fanout.active:
            return 1
        return max(1, sum(fanout.threads.values()))

    def _forget(self, run_uid: str) -> None:
        """A run closed: its pipeline and what the source kept for it go."""
        self.compute.forget(run_uid)
        self.source.forget(run_uid)
