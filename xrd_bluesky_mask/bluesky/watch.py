"""`TiledRunWatcher` (``xrd-mask watch``): mask each new run of a Tiled container from Tiled alone.

No RunEngine, 0MQ or Kafka: the trigger is Tiled's own push notifications (a websocket per
node, which needs the server's streaming cache: `xrd_bluesky_mask.tiled.streaming`). Whoever
writes the runs (TiledWriter in another process, on another machine) is not told anything.

* `bluesky_tiled_plugins.subscribe_to_streams` follows every new run of the container down to
  its stream's arrays: each time an array grows (a frame registered), the frames it now holds
  are queued for the same `Worker` the live callback uses (`make_callback`: Tiled frame source
  with retries, results journal, Tiled result sink), in order: `OpenRun`, `FrameItem`, ...,
  `CloseRun`.
* A subscription to the container's own updates says when a run's metadata changes: once it
  holds the stop document, the run's frames are counted over HTTP, the last ones queued, and
  the run closed with the scan's exit status.
* Tiled delivers each notification at most once, and nothing while the watcher is away or
  the server restarts. So, on start and whenever the server answers again after an outage
  (probed every ``health_s``), the watcher subscribes afresh and *catches up*: every run of the
  container without a finished result with these masker and integration settings is planned
  like ``reprocess`` plans it (`xrd_bluesky_mask.reprocess.plan.plan_jobs`: the frames already
  written are skipped, the same result version is completed) and its missing frames queued.
  A run still open and not heard from for ``resync_s`` is counted over HTTP again (runs found
  open by a catch-up are followed that way, not by subscription).

Work on the watcher's own state happens on one thread (`run`): the subscriptions' threads only
put notifications on a queue (`xrd_bluesky_mask.bluesky.watch_feed`). A run is identified by
its start uid; the results are those the callback would write (same provenance, same
``settings_id``, same result version).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..documents import find_poni, start_frame_shape
from ..errors import GeometryError, UnknownSource
from ..pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec, WarmGeometry
from ..tiled.results import DEFAULT_ROOT, FINAL_STATUSES, finished_sources
from .watch_feed import Event, Grew, MetadataChanged, Reconnected, RunFeed, Started

__all__ = ["TiledRunWatcher"]

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """What the watcher knows of one run it masks."""

    uid: str
    stream: str
    field: str
    # dataclasses.field: in this class body `field` names the attribute above
    skip: set[int] = dataclasses.field(default_factory=set)  # frames written before
    next: int = 0  # frames below this index are queued (or skipped)
    live: bool = False  # its arrays notify us
    closed: bool = False
    seen: float = dataclasses.field(default_factory=time.monotonic)


class TiledRunWatcher:
    """Mask every run that appears in a Tiled container, and catch up with the ones missed.

    Parameters
    ----------
    runs
        The container TiledWriter writes runs to (a tiled client node).
    masker, poni, integration, root
        As for `XRDMaskCallback` (``poni`` overrides what each run carries).
    stream
        The stream holding the frames (subscriptions follow only this one); ``primary``.
    quiet_s, frame_timeout, retry_for, journal, journal_max_bytes, if_misoriented, dask, workers
        The worker's, as for ``xrd-mask worker`` (`make_callback`).
    since
        Catch up only with runs whose start document is this recent (Unix seconds); None: all.
    resync_s
        Seconds without a notification after which an open run that no subscription follows is
        counted over HTTP again (those that one follows: 10x this).
    health_s
        Seconds between probes of the server; an answer after a failed probe means "reconnect".
    max_size
        Largest websocket message, bytes (Tiled's default, 1 MB, is too small for some
        notifications of large arrays).
    report
        Called with one line per event worth a console line (run opened, finished, outage).
    """

    def __init__(self, runs: Any, *, masker: Any = None, poni: Any = None,
                 integration: Any = None, root: str = DEFAULT_ROOT, stream: str = "primary",
                 quiet_s: float = 0.0, frame_timeout: float = 30.0, retry_for: float = 600.0,
                 journal: Any = None, journal_max_bytes: int | None = None,
                 since: float | None = None, resync_s: float = 2.0, health_s: float = 1.0,
                 max_size: int = 64_000_000,
                 report: Callable[[str], None] | None = None, if_misoriented: str = "refuse",
                 dask: Any = None, workers: int | None = None) -> None:
        from tiled.client import from_context

        from ..azimuthal import IntegrationSettings
        from ..geometry import poni_text_from
        from .remote import make_callback

        self.runs = runs
        self.client = from_context(runs.context)
        self.uri = str(runs.context.api_uri)
        self.root, self.stream, self.since = root, stream, since
        self.poni = poni_text_from(poni)
        self.resync_s, self.health_s, self.max_size = resync_s, health_s, max_size
        self.report = report or (lambda line: log.info("%s", line))
        self.integration = integration or IntegrationSettings()
        self.callback = make_callback(self.client, runs=runs, masker=masker,
                                      integration=self.integration, root=root,
                                      quiet_s=quiet_s, frame_timeout=frame_timeout,
                                      retry_for=retry_for, journal=journal,
                                      journal_max_bytes=journal_max_bytes,
                                      if_misoriented=if_misoriented, dask=dask,
                                      workers=workers)
        self.worker = self.callback.worker
        self.masker_settings = self.worker.compute.masker().settings()  # unusable: fails here
        self._integration_md = self.integration.model_dump(mode="json")
        self.active: dict[str, _Run] = {}
        self.finished: set[str] = set()  # closed by us, or already done: left alone
        self.followed: set[str] = set()  # runs whose frames notifications announced
        self._skipped: set[str] = set()  # not maskable (no image, no geometry): said once
        self.feed = RunFeed(runs, stream=stream, wanted=lambda uid: uid not in self.finished,
                            health_s=health_s, max_size=max_size, report=self.report)
        self._stop = threading.Event()
        self.catch_ups = 0

    # -- the watcher's thread -------------------------------------------------------------
    def start(self) -> TiledRunWatcher:
        """Subscribe, start probing the server, and catch up (queue what was missed)."""
        self.feed.subscribe()
        self.feed.start_probing()
        self.catch_up()
        return self

    def run(self, stop: threading.Event | None = None) -> None:
        """Handle notifications until ``stop`` is set (or `close`); Ctrl-C ends it too."""
        stop = stop or self._stop
        while not (stop.is_set() or self._stop.is_set()):
            self.step(0.25)

    def step(self, timeout: float = 0.0) -> None:
        """Handle the notifications waiting (the first up to ``timeout`` s), then the timers."""
        try:
            event: Event | None = self.feed.events.get(timeout=timeout) \
                if timeout > 0 else self.feed.events.get_nowait()
        except queue.Empty:
            event = None
        while event is not None:
            self._guarded(self._handle, event)
            try:
                event = self.feed.events.get_nowait()
            except queue.Empty:
                event = None
        self._guarded(self._tick)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Never let one notification stop the watcher: log, and let catch-up repair it."""
        from ..tiled.retry import unreachable

        try:
            fn(*args)
        except Exception as exc:
            if unreachable(exc):
                log.debug("xrd-mask watch: Tiled unreachable (%s); catching up later", exc)
            else:
                log.exception("xrd-mask watch: error handling %s", args[0] if args else fn)

    def _handle(self, event: Event) -> None:
        if isinstance(event, Reconnected):
            self.report(f"Tiled at {self.uri} answers again: subscribing and catching up")
            self.feed.subscribe()
            self.catch_up()
        elif isinstance(event, Started) and event.uid not in self.finished \
                and event.uid not in self.active:
            self._warm(event.uid, event.start)
        elif isinstance(event, Grew) and event.uid not in self.finished:
            run = self.active.get(event.uid) or self._open(event.uid)
            if run is not None and event.stream == run.stream and run.field in event.keys:
                run.live, run.seen = True, time.monotonic()
                self.followed.add(run.uid)
                self._queue_frames(run, event.rows)
        elif isinstance(event, MetadataChanged) and event.uid not in self.finished \
                and "stop" in event.metadata:
            self.sync(event.uid)

    def _tick(self) -> None:
        now = time.monotonic()
        for run in list(self.active.values()):
            if run.closed:
                self._report_finished(run)
            elif now - run.seen > self.resync_s * (10 if run.live else 1):
                run.seen = now
                self.sync(run.uid)

    # -- runs -----------------------------------------------------------------------------
    def _warm(self, uid: str, start: dict[str, Any]) -> None:
        """Have the worker build the engine and tables of the geometry run ``uid``'s start
        document (or ``--poni``) names, as the live callback does: the run opens only with
        its first frame, which would otherwise wait for them (about 3 s at 2880x2880 px)."""
        poni, where = find_poni(start, {}, self.poni)
        if poni is not None:
            self.worker.submit(WarmGeometry(uid, poni, start_frame_shape(start), where))

    def _open(self, uid: str) -> _Run | None:
        """Plan run ``uid`` and queue its `OpenRun`; None when there is nothing to do (yet)."""
        from ..reprocess.plan import plan_jobs
        from ..reprocess.sources import resolve_sources

        try:
            (src,) = resolve_sources(self.runs, [uid], poni=self.poni)
        except (UnknownSource, GeometryError) as exc:
            stopped = "stop" in (self.runs[uid].metadata or {})
            if stopped or isinstance(exc, GeometryError):
                self.finished.add(uid)
                if uid not in self._skipped:
                    self._skipped.add(uid)
                    self.report(f"run {uid[:8]}: not masked: {exc}")
            return None  # no image yet: the next notification tries again
        (job,) = plan_jobs(self.client, [src], masker_settings=self.masker_settings,
                           integration=self._integration_md, root=self.root)
        if job.up_to_date:
            self.finished.add(uid)
            return None
        start = self.runs[uid].metadata.get("start") or {}
        num = start.get("num_points")
        self.worker.submit(OpenRun(RunSpec(
            uid, src.stream, src.field, src.poni, src.shape,
            int(num) if isinstance(num, int) else None, src.geometry_source)))
        run = self.active[uid] = _Run(uid, src.stream, src.field, skip=set(job.done))
        done = f", {len(job.done)} done before" if job.done else ""
        self.report(f"run {uid[:8]}: masking {src.stream}/{src.field} "
                    f"({_count(src.n_frames, 'frame')} so far{done})")
        return run

    def _queue_frames(self, run: _Run, rows: int) -> None:
        for index in range(run.next, rows):
            if index not in run.skip:
                self.worker.submit(FrameItem(run.uid, run.stream, run.field, index))
        run.next = max(run.next, rows)

    def sync(self, uid: str) -> None:
        """Count run ``uid``'s frames over HTTP, queue the new ones; close it once stopped."""
        if uid in self.finished:
            return
        try:
            node = self.runs[uid]
        except KeyError:  # being replaced (a backup replayed): its notifications follow
            return
        stop = (node.metadata or {}).get("stop")
        run = self.active.get(uid) or self._open(uid)
        if run is None:
            return
        rows = int(node[run.stream][run.field].shape[0])
        self._queue_frames(run, rows)
        if stop:
            self.worker.submit(CloseRun(uid, str(stop.get("exit_status") or ""),
                                        str(stop.get("reason") or ""), n_frames=rows))
            run.closed = True
            self.finished.add(uid)

    def _report_finished(self, run: _Run) -> None:
        record = self.worker.records.get(run.uid)
        if record is None or record.status not in FINAL_STATUSES:
            return
        del self.active[run.uid]
        latencies = sorted(f.timings["latency"] for f in record.frames.values()
                           if "latency" in f.timings)
        median = f", median latency {latencies[len(latencies) // 2]:.2f} s" if latencies else ""
        self.report(f"run {run.uid[:8]}: {record.status}, "
                    f"{_count(len(record.done), 'frame')} masked, {len(record.errors)} failed"
                    f"{median}")

    def catch_up(self) -> int:
        """Queue the missing frames of every run without a finished result; returns how many
        runs were opened or synced. Runs already being masked are counted again."""
        from tiled.queries import Key

        from ..reprocess.sources import _is_run

        self.catch_ups += 1
        done = finished_sources(self.client, self.masker_settings, self._integration_md,
                                root=self.root)
        container = self.runs if self.since is None else \
            self.runs.search(Key("start.time") >= self.since)
        touched = 0
        for uid, node in container.items():
            if uid in self.finished or uid in done or not _is_run(node):
                if uid in done:
                    self.finished.add(uid)
                continue
            self.sync(uid)
            touched += uid in self.active
        if touched:
            self.report(f"caught up: {_count(touched, 'run')} without a finished result "
                        "being masked")
        return touched

    # -- ending ---------------------------------------------------------------------------
    def waiting(self) -> str:
        """What is not in Tiled yet and where it waits (`XRDMaskCallback.waiting`)."""
        return self.callback.waiting()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued frame is masked and delivered (`XRDMaskCallback.wait`)."""
        return self.callback.wait(timeout, warn=False)

    def close(self, timeout: float | None = None) -> bool:
        """Stop following the server, finish the queued work (up to ``timeout`` s) and stop
        the worker; False when work was left (in the journal, for the next start)."""
        self._stop.set()
        self.feed.close()
        return self.callback.close(timeout)

    def __enter__(self) -> TiledRunWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
