"""The worker's compute stage on a Dask cluster: one run's frames fanned out, results in order.

`Worker` (``dask=``) hands its compute stage to a `FanOut`. The read stage stays in the
worker's process (it knows where each frame is: the detector file a document named, or Tiled,
with its waits through outages) and so does the write stage (the run's one journaled sink).
What moves to the cluster is the costly part, "mask + integrate + tables of one frame":
`compute_frame`, a pure function of the run's `RunTask` and the frame.

- **Once per run, not per frame**: when a run opens, its `RunTask` (the masker with its
  model, the PONI text, the frame shape, the integration settings and the execution policy)
  is scattered to every Dask worker (``broadcast=True``). Each Dask worker builds its
  `Pipeline` from it on its first frame (pyFAI's engine, the geometry tables) and keeps it
  on that object until the run closes and the driver releases it.
- **Frames**: scattered to the Dask worker with the fewest of this run's frames in flight,
  then computed there. What comes back is the frame's mask codes (uint8, 8.3 MB at 2880²),
  its pattern, tables and timings; the probability image and the frame stay behind.
- **Order and exactly once**: results enter the write stage in the order the frames came, from
  a queue of entries in frame order (a reorder buffer: a later frame finished early waits for
  the one before it). The journal then keeps them as the in-process path does.
- **Backpressure**: at most ``per_thread`` frames per Dask worker thread are in flight (2:
  one computing, one on its way); the read stage waits behind that bound, and the frames not yet
  read are a few bytes each. The lag report (`pipeline.lag`) says how many Dask workers the
  measured rate and per-frame cost need.
- **Faults**: a frame whose task was lost (its Dask worker killed: the scattered frame went
  with it, the task is cancelled) is scattered and submitted again, ``retries`` times, then
  computed in-process. The scheduler going away (the client no longer ``running``) turns the
  fan-out off for good, with one warning: the frames in flight and every later one are
  computed in-process by the same code. A frame past its deadline (10x the slowest so far,
  at least ``min_deadline_s``) is computed in-process too. A masking error inside the task
  (the masker raised) is the frame's own failure, recorded as in-process.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..azimuthal.orientation import AS_GIVEN, Orientation
from ..protocols import ExecutionPolicy, Masker, MaskResult
from .items import CloseRun, Computed, Failure, FrameRead, OpenRun, ToWrite

if TYPE_CHECKING:
    from ..azimuthal import IntegrationSettings
    from .process import FrameResult, Pipeline
    from .worker import Worker

__all__ = ["FanOut", "RunTask", "compute_frame"]

log = logging.getLogger(__name__)

#: How often the compute stage looks at its frames in flight while new frames may come, s.
POLL_S = 0.02


@dataclass
class RunTask:
    """What a Dask worker needs to compute a run's frames (scattered once per run).

    ``poni`` is the geometry's PONI text and ``shape`` the frame ``(rows, cols)``; the
    `Pipeline` is built from them on the Dask worker on first use and kept there (never
    pickled: each Dask worker builds its own)."""

    run_uid: str
    masker: Masker
    poni: str
    shape: tuple[int, int] | None
    geometry_source: str
    integration: IntegrationSettings | None
    policy: ExecutionPolicy
    tables: bool
    orientation: Orientation | None = None
    _built: Any = field(default=None, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_built"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def pipeline(self) -> Pipeline:
        """The run's `Pipeline` on this Dask worker (built on the first call)."""
        from ..geometry import as_geometry
        from .process import Pipeline

        with self._lock:
            if self._built is None:
                geometry = as_geometry(self.poni, self.shape,
                                       source=self.geometry_source or None)
                self._built = Pipeline(self.masker, geometry, self.integration,
                                       policy=self.policy, tables=self.tables,
                                       orientation=self.orientation)
            return self._built


@dataclass(frozen=True)
class Remote:
    """A frame's result as it travels back from a Dask worker: mask codes instead of the two
    bool images and the probability (8.3 MB at 2880² instead of 58 MB)."""

    codes: np.ndarray
    pattern: Any
    timings: dict[str, float]
    mask_timings: dict[str, float]
    tables: Any

    def result(self) -> FrameResult:
        """The `FrameResult` the write stage takes (spots and static decoded from the codes:
        the codes, spot fraction and pattern are those computed on the Dask worker)."""
        from ..protocols import MaskCode
        from .process import FrameResult

        mask = MaskResult(self.codes == MaskCode.SPOT, self.codes == MaskCode.STATIC,
                          None, self.mask_timings)
        return FrameResult(mask, self.pattern, self.timings, self.tables)


def compute_frame(task: RunTask, frame: np.ndarray) -> Remote | Failure:
    """Run on a Dask worker: mask, integrate and tabulate one frame of ``task``'s run. The
    masker's or pyFAI's error comes back as the frame's `Failure` (it is the frame's, not the
    cluster's).

    The run's first frame on a Dask worker builds its engine and geometry tables there first
    (`Pipeline.warm`): those seconds come back as ``timings["warm"]``, outside the frame's
    ``"total"``, so the cost per frame the lag report sizes workers with is what every frame
    costs, not the one-off build (which made a short scan ask for dozens of workers)."""
    try:
        pipeline = task.pipeline()
        try:
            warm_s = pipeline.warm()
        except Exception:  # the frame then builds it, and raises the real error if any
            warm_s = 0.0
        (result,) = pipeline.process([frame])
    except Exception as exc:
        return Failure(exc)
    return Remote(result.mask.codes, result.pattern, {**result.timings, "warm": warm_s},
                  result.mask.timings, result.tables)


@dataclass
class _Entry:
    """One item in frame order: ready to write (``out``) or a frame on the cluster."""

    out: list[ToWrite] | None = None
    read: FrameRead | None = None
    future: Any = None
    tries: int = 0
    started: float = 0.0
    where: str | None = None


class FanOut:
    """The compute stage of ``worker`` on the Dask cluster behind ``client`` (see the module
    docstring). ``per_thread``: frames in flight per Dask worker thread; ``retries``: times a
    lost frame is submitted again before it is computed in-process; ``min_deadline_s``: the
    least seconds a frame may take on the cluster before it is computed in-process."""

    def __init__(self, worker: Worker, client: Any, *, per_thread: int = 2, retries: int = 2,
                 min_deadline_s: float = 120.0) -> None:
        self.worker, self.client = worker, client
        self.per_thread, self.retries = max(1, int(per_thread)), int(retries)
        self.min_deadline_s = float(min_deadline_s)
        self.active = True
        self.slowest = 0.0
        self._order: collections.deque[_Entry] = collections.deque()
        self._tasks: dict[str, tuple[RunTask, Any]] = {}  # run uid -> (task, its future)
        self.threads: dict[str, int] = {}  # Dask worker address -> its threads
        self._turn = 0

    # -- the stage ----------------------------------------------------------------------
    def run(self) -> None:
        """Replace `Worker`'s compute loop: until the stop item, then the stop item on."""
        inbox, w = self.worker._to_compute, self.worker
        while True:
            try:
                got = inbox.get(timeout=POLL_S) if self._order else inbox.get()
            except queue.Empty:
                self._flush()
                continue
            if got is None:
                self._flush(everything=True)
                self.worker._to_write.put(None)
                return
            w._yield()
            if isinstance(got, FrameRead) and not isinstance(got.frame, Failure) \
                    and self.active and got.item.run_uid in self._tasks \
                    and self._first_frame(got):
                entry = _Entry(read=got)
                self._order.append(entry)
                self._submit(entry)
            elif isinstance(got, FrameRead):  # a read failure, a failed run, or in-process
                self._order.append(_Entry(out=list(w.compute.compute([got]))))
            else:
                out = w.compute.step(got)
                if isinstance(got, OpenRun):
                    self._open(got)
                elif isinstance(got, CloseRun):
                    self._release(got.run_uid)
                self._order.append(_Entry(out=out))
            self._flush()
            while self._in_flight() >= self._limit():
                self._flush(block=True)

    def _in_flight(self) -> int:
        return sum(1 for e in self._order if e.out is None)

    def _limit(self) -> int:
        return self.per_thread * max(1, sum(self.threads.values()))

    @property
    def deadline_s(self) -> float:
        """Seconds a frame may take on the cluster: 10x the slowest so far, at least
        ``min_deadline_s``."""
        return max(self.min_deadline_s, 10 * self.slowest)

    # -- runs ---------------------------------------------------------------------------
    def _open(self, item: OpenRun) -> None:
        """Send the run's masker and geometry to every Dask worker, once."""
        spec, stage = item.spec, self.worker.compute
        pipeline = stage.pipelines.get(spec.uid)
        if pipeline is None or not self.active or spec.poni is None:
            return  # a run that failed to open fails in-process, with its own reason
        task = RunTask(spec.uid, pipeline.masker, spec.poni, spec.shape, spec.geometry_source,
                       stage.integration, stage.policy, stage.tables)
        try:
            self._refresh_workers()
            self._tasks[spec.uid] = (task, self.client.scatter(task, broadcast=True,
                                                               hash=False))
        except Exception as exc:
            self._off(f"the run's masker and geometry could not be sent to it "
                      f"({type(exc).__name__}: {exc})")

    def _release(self, run_uid: str) -> None:
        _, future = self._tasks.pop(run_uid, (None, None))
        if future is not None:
            try:
                future.release()
            except Exception:  # the scheduler is gone: nothing to release
                pass

    def _first_frame(self, read: FrameRead) -> bool:
        """The geometry check of a run's first frame, here as in-process (once per run).
        False when the run was refused (its frames then fail in-process, with the reason);
        when the orientation that fits is applied, the Dask workers get the turned run."""
        uid = read.item.run_uid
        pipeline = self.worker.compute.pipelines.get(uid)
        if pipeline is None or not isinstance(read.frame, np.ndarray):
            return False
        used = self.worker.compute.check_geometry(uid, pipeline, read.frame)
        if used is None:
            self._release(uid)
            return False
        task, _ = self._tasks[uid]
        if used.orientation != (task.orientation or AS_GIVEN):
            turned = dataclasses.replace(task, orientation=used.orientation, _built=None)
            self._release(uid)
            try:
                self._tasks[uid] = (turned, self.client.scatter(turned, broadcast=True,
                                                                hash=False))
            except Exception as exc:
                self._off(f"the run's masker and geometry could not be sent to it "
                          f"({type(exc).__name__}: {exc})")
                return False
        return True

    # -- frames -------------------------------------------------------------------------
    def _refresh_workers(self) -> None:
        self.threads = dict(self.client.nthreads())

    def _least_busy(self) -> str | None:
        """The Dask worker with the fewest of our frames in flight per thread (ties in turn,
        so frames that come slower than they are computed still spread over the workers)."""
        if not self.threads:
            return None
        busy = collections.Counter(e.where for e in self._order if e.out is None and e.where)
        names = sorted(self.threads)
        self._turn = (self._turn + 1) % len(names)
        return min(names, key=lambda a: (busy[a] / self.threads[a],
                                          (names.index(a) - self._turn) % len(names)))

    def _submit(self, entry: _Entry) -> None:
        """Scatter the entry's frame to a Dask worker and compute it there; in-process when the
        cluster cannot take it."""
        assert entry.read is not None
        entry.tries += 1
        try:
            if self.client.status != "running":
                raise ConnectionError(f"the Dask client is {self.client.status}")
            if entry.tries > 1:
                self._refresh_workers()
            where = self._least_busy()
            run_uid = entry.read.item.run_uid
            spec, task = self._tasks[run_uid]
            if task.status != "finished":  # every copy lost with its workers: send it again
                task = self.client.scatter(spec, broadcast=True, hash=False)
                self._tasks[run_uid] = (spec, task)
            frame = self.client.scatter(entry.read.frame, workers=[where] if where else None,
                                        hash=False)
            entry.future = self.client.submit(compute_frame, task, frame, pure=False)
            entry.where, entry.started = where, time.monotonic()
        except Exception as exc:
            self._lost(entry, exc)

    def _lost(self, entry: _Entry, exc: BaseException) -> None:
        """The cluster lost the entry's frame: again on the cluster, or in-process."""
        assert entry.read is not None
        item = entry.read.item
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if self.active and self.client.status != "running":
            self._off(f"the scheduler went away ({why})")
        if self.active and entry.tries <= self.retries:
            log.warning("xrd-mask: frame %d of run %s lost on the Dask cluster (%s); "
                        "submitted again (try %d)", item.index, item.run_uid, why,
                        entry.tries + 1)
            self._submit(entry)
            return
        self._local(entry)

    def _local(self, entry: _Entry) -> None:
        assert entry.read is not None
        if entry.future is not None:
            try:
                entry.future.cancel()
            except Exception:
                pass
        entry.future, entry.out = None, list(self.worker.compute.compute([entry.read]))

    def _off(self, why: str) -> None:
        """Stop using the cluster: this and every later frame in-process."""
        if not self.active:
            return
        self.active = False
        log.warning("xrd-mask: Dask cluster unusable, masking in this process from now on "
                    "(no frame is lost; restart the worker to use the cluster again): %s", why)

    def _flush(self, *, block: bool = False, everything: bool = False) -> None:
        """Hand the finished entries at the head of the frame order to the write stage; with
        ``block`` wait for the head, with ``everything`` for all."""
        while self._order:
            head = self._order[0]
            if head.out is None and not self._settle(head, wait=block or everything):
                return
            assert head.out is not None
            for out in head.out:
                self.worker._to_write.put(out)
            self._order.popleft()
            block = False

    def _settle(self, entry: _Entry, *, wait: bool) -> bool:
        """Turn a finished (or lost, or overdue) frame into its results; False while it runs."""
        from distributed import wait as dask_wait

        while True:
            future = entry.future
            if future is None:  # not on the cluster any more: in-process
                self._local(entry)
                return True
            if not future.done():
                if not self.active:
                    self._local(entry)
                    return True
                overdue = time.monotonic() - entry.started - self.deadline_s
                if overdue > 0:
                    log.warning("xrd-mask: frame %d of run %s did not come back from the Dask "
                                "cluster within %.0f s; masked in this process",
                                entry.read.item.index if entry.read else -1,
                                entry.read.item.run_uid if entry.read else "?",
                                self.deadline_s)
                    self._local(entry)
                    return True
                if not wait:
                    return False
                try:
                    dask_wait([future], timeout=min(1.0, -overdue))
                except Exception:  # a timeout; the loop looks at the state again
                    pass
                continue
            try:
                got = future.result()
            except Exception as exc:  # the task was lost or cancelled, never the masker's
                self._lost(entry, exc)
                continue
            assert entry.read is not None
            if isinstance(got, Remote):
                self.slowest = max(self.slowest, time.monotonic() - entry.started)
                result: FrameResult | Failure = got.result()
            else:
                result = got
            entry.out = [Computed(entry.read.item, result, entry.read.seconds)]
            entry.future = entry.read = None  # the frame is no longer needed here
            return True
