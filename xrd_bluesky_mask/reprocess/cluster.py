"""Reprocessing on Dask distributed: frames fanned out to workers, the driver holds no frame data.

The driver opens each source's result version (metadata only) and submits chunks of frame
indices. A task connects to Tiled itself (one client per worker process), reads its frames,
masks and integrates them with the live pipeline's `Worker`, writes masks and pattern rows
into the shared version (`TiledResultSink.attach`: arrays only) and returns a few numbers and
the table rows per frame. The driver is the only one writing the version's metadata and tables:
it records finished frames (`mark_done`, so an interrupted call resumes from there), their table
rows (`add_tables`) and the final status.

Chunks of all sources are submitted at once, so runs and frames spread over the workers
together. Missing ``distributed``: `MissingExtra` names what to install.

No chunk can hang the call. At most two chunks per worker thread are in flight (the rest wait
in the driver, so a chunk's clock starts close to when a worker takes it), and each has a
deadline (``chunk_timeout`` seconds; by default 10 times the slowest chunk finished so far, at
least 120 s, and 600 s before any finished). A chunk past it is cancelled; the worker that held
it stopped answering, so it is restarted (through its Nanny; a worker without one is only left
out) and the chunk is submitted to the other workers, up to ``retries`` times; then its frames
are recorded as failed with the reason, and ``reprocess`` again redoes them. Writes are
idempotent, so a stalled task that finishes late writes the same rows.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DaskConnectionError, MissingExtra
from ..sinks.base import SinkWrapper
from ..sinks.tiled import TiledResultSink
from .plan import Job, JobSink
from .sources import SeriesFrameSource, Source

if TYPE_CHECKING:
    import numpy as np

    from ..spots import FrameTables

__all__ = ["ChunkTask", "dask_client", "process_chunk", "run_dask"]

log = logging.getLogger(__name__)
_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class ChunkTask:
    """What a Dask task needs besides its frame indices (small, picklable)."""

    uri: str
    api_key: str | None
    source: Source
    root: str
    result_path: str
    integration: Any
    if_misoriented: str = "refuse"


def _tiled(uri: str, api_key: str | None) -> Any:
    """One Tiled client per worker process and server (clients are thread-safe)."""
    from tiled.client import from_uri

    with _clients_lock:
        client = _clients.get((uri, api_key))
        if client is None:
            client = _clients[(uri, api_key)] = from_uri(uri, api_key=api_key)
        return client


class _AttachedSink(SinkWrapper[TiledResultSink]):
    """The task's `ResultSink`: writes arrays into the version the driver opened (its
    ``close_run`` only flushes rows: the driver writes the version's metadata), and keeps each
    frame's table rows for the driver (``tables``)."""

    def __init__(self, sink: TiledResultSink, path: str, expected: int) -> None:
        super().__init__(sink)
        self.path, self.expected = path, expected
        self.tables: dict[int, FrameTables] = {}

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """Write the arrays; keep the tables of a frame written for the driver."""
        self.inner.write(source_uid, index, mask_codes, pattern)
        if tables is not None:
            self.tables[int(index)] = tables

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Attach to the version the driver opened, instead of opening one."""
        self.inner.attach(source_uid, self.path, self.expected)


def process_chunk(task: ChunkTask, indices: list[int], masker: Any) -> list[dict[str, Any]]:
    """Run on a Dask worker: frames ``indices`` of ``task.source``, read from Tiled and written
    back. Returns per frame ``index``, ``error`` (None when written), ``spot_fraction``,
    ``static_fraction``, ``seconds`` and ``tables`` (its `FrameTables`, or None); a run-level
    error comes as index ``"run"``."""
    from ..pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
    from ..pipeline.worker import Worker

    client = _tiled(task.uri, task.api_key)
    src = task.source
    sink = _AttachedSink(TiledResultSink(client, root=task.root, progress_interval=1e9),
                         task.result_path, src.n_frames)
    worker = Worker(SeriesFrameSource(client, [src]), sink, masker=masker,
                    integration=task.integration, niceness=0,
                    if_misoriented=task.if_misoriented).start()
    worker.submit(OpenRun(RunSpec(src.source_id, src.stream, src.field, src.poni, src.shape,
                                  src.n_frames, src.geometry_source)))
    for index in indices:
        worker.submit(FrameItem(src.source_id, src.stream, src.field, int(index)))
    worker.submit(CloseRun(src.source_id, "reprocess"))
    worker.close()
    record = worker.records[src.source_id]
    out: list[dict[str, Any]] = [
        {"index": i, "error": r.error, "spot_fraction": r.spot_fraction,
         "static_fraction": r.static_fraction,
         "seconds": sum(r.timings.get(k, 0.0) for k in ("read", "mask", "integrate", "write")),
         "tables": sink.tables.get(i) if r.error is None else None}
        for i, r in sorted(record.frames.items())]
    if record.run_errors:
        out.append({"index": "run", "error": "; ".join(record.run_errors)})
    return out


def dask_client(dask: Any = None, workers: int | None = None, *,
                default: bool = True) -> tuple[Any, Any]:
    """``(client, closer)``: a `distributed.Client` for ``dask`` (a scheduler address or a
    Client, used as is) or a new `LocalCluster` of ``workers`` processes (1 thread each).
    ``default=False``: the client does not become this process's Dask scheduler (the live
    worker's own Tiled reads, which go through dask, stay in its threads)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingExtra(
            "Dask scale-out (--dask, --workers) needs `distributed`: pip install "
            "'xrd-bluesky-mask[dask]' (or pip install 'dask[distributed]')."
        ) from None
    if dask is not None and not isinstance(dask, str):
        return dask, lambda: None
    _quiet_dask_logs()
    if dask:
        try:
            client = Client(dask, timeout="10s", set_as_default=default)
        except OSError as exc:
            raise DaskConnectionError(f"no Dask scheduler answers at {dask} ({exc}). Start one "
                                      "(`dask scheduler`, then `dask worker ADDRESS`) or use "
                                      "--workers N for a local cluster.") from None
        return client, client.close
    if workers is None or workers < 1:
        raise ConfigError(f"workers (--workers) must be at least 1, got {workers}")
    # None: no dashboard (distributed leaves the argument unannotated, read as str)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None,  # pyright: ignore[reportArgumentType]
                           host="127.0.0.1")
    client = Client(cluster, set_as_default=default)

    def close() -> None:
        client.close()
        cluster.close()

    return client, close


def _quiet_dask_logs() -> None:
    """Dask's INFO lines (scheduler, nanny, workers) only when our own logging is at INFO."""
    import logging

    import dask.config

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("distributed").setLevel(logging.WARNING)
        dask.config.set({"logging.distributed": "warning"})  # inherited by worker processes


def _chunks(todo: list[int], size: int) -> list[list[int]]:
    return [todo[i:i + size] for i in range(0, len(todo), size)]


def run_dask(jobs: list[Job], root_client: Any, *, masker: Any, integration: Any, root: str,
             client: Any, progress: bool = True, chunk_size: int | None = None,
             chunk_timeout: float | None = None, retries: int = 2,
             if_misoriented: str = "refuse") -> None:
    """Process every job's ``todo`` frames on the Dask cluster behind ``client``; results and
    final state go into ``job.summary``."""
    import dask.config

    # Tiled's ArrayClient reads through dask.compute(). With workers in this process
    # (LocalCluster(processes=False)) that compute would go to the cluster whose threads are
    # all busy waiting for it: a deadlock. Reads run in the calling thread instead.
    with dask.config.set(scheduler="synchronous"):
        _run_dask(jobs, root_client, masker=masker, integration=integration, root=root,
                  client=client, progress=progress, chunk_size=chunk_size,
                  deadline=_Deadline(chunk_timeout), retries=retries,
                  if_misoriented=if_misoriented)


class _Deadline:
    """Seconds a chunk may take: fixed, or 10x the slowest finished (120 s at least; 600 s
    before any finished)."""

    def __init__(self, fixed: float | None) -> None:
        self.fixed, self.slowest = fixed, 0.0

    def finished(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)

    @property
    def seconds(self) -> float:
        if self.fixed is not None:
            return self.fixed
        return max(120.0, 10 * self.slowest) if self.slowest else 600.0


@dataclass
class _Chunk:
    job: Job
    task: ChunkTask
    indices: list[int]
    started: float
    tries: int = 1


def _run_dask(jobs: list[Job], root_client: Any, *, masker: Any, integration: Any, root: str,
              client: Any, progress: bool, chunk_size: int | None, deadline: _Deadline,
              retries: int, if_misoriented: str) -> None:
    from distributed import wait
    from distributed.client import FuturesCancelledError as CancelledError

    from ..progress import progress as tqdm
    from ..sinks.retry import RetryingTiledSink

    work = [job for job in jobs if not job.up_to_date]
    sink = JobSink(RetryingTiledSink(TiledResultSink(root_client, root=root),
                                     give_up_after=60.0), work)
    uri, api_key = str(root_client.context.api_uri), root_client.context.api_key
    threads = max(1, sum(client.nthreads().values()))
    shared: dict[str, Any] = {}

    def scatter() -> None:
        shared["masker"] = client.scatter(masker, broadcast=True)

    scatter()
    futures: dict[Any, _Chunk] = {}
    waiting: list[_Chunk] = []  # submitted when a slot frees: 2 per worker thread in flight
    remaining: dict[str, int] = {}
    started: dict[str, float] = {}
    bars: dict[str, Any] = {}
    avoid: set[str] = set()  # workers that stopped answering and could not be restarted

    def submit(chunk: _Chunk, *, away_from: set[str] | None = None) -> None:
        """Hand a chunk to the cluster, never to a worker that stopped answering."""
        others = [w for w in client.nthreads() if w not in avoid | (away_from or set())]
        chunk.started = time.monotonic()
        futures[client.submit(process_chunk, chunk.task, chunk.indices, shared["masker"],
                              pure=False, workers=others or None)] = chunk

    def top_up() -> None:
        slots = 2 * max(1, sum(n for w, n in client.nthreads().items() if w not in avoid))
        while waiting and len(futures) < slots:
            submit(waiting.pop(0))

    for position, job in enumerate(work, start=1):
        sid = job.source.source_id
        started[sid] = time.perf_counter()
        sink.open_run(sid, job.metadata)
        task = ChunkTask(uri, api_key, job.source, root, job.summary.result_path or "",
                         integration, if_misoriented)
        size = chunk_size or max(1, min(16, math.ceil(len(job.todo) / (2 * threads))))
        chunks = _chunks(job.todo, size)
        remaining[sid] = len(chunks)
        bars[sid] = tqdm(total=len(job.todo), desc=job.source.label, unit="frame",
                         leave=False, disable=not progress, position=position)
        waiting.extend(_Chunk(job, task, chunk, 0.0) for chunk in chunks)
        if not chunks:
            _finish(job, sink)
    top_up()
    n_todo = sum(len(j.todo) for j in work)
    total = tqdm(total=n_todo, desc="reprocess (dask)", unit="frame",
                 disable=not progress or n_todo == 0, position=0)

    def restart(stuck: set[str]) -> str:
        """Restart the workers that stopped answering (their thread never comes back by
        itself); one that cannot be restarted is left out from now on."""
        try:
            status = client.restart_workers(sorted(stuck), timeout=60, raise_for_error=False)
        except Exception as exc:  # no Nanny, or the scheduler refused
            status = {w: f"{type(exc).__name__}" for w in stuck}
        avoid.update(w for w, s in status.items() if s != "OK")
        scatter()  # the scheduler drops a scattered value when a worker holding it restarts
        return ", ".join(f"{w} {'restarted' if s == 'OK' else 'left out (' + str(s) + ')'}"
                         for w, s in sorted(status.items()))

    def overdue(future: Any, chunk: _Chunk) -> list[dict[str, Any]] | None:
        """Resubmit a chunk past its deadline; its failure records once out of tries."""
        limit = deadline.seconds
        try:
            stuck = {w for w, keys in client.processing().items() if future.key in keys}
        except Exception:
            stuck = set()
        future.cancel()
        what = f"; worker {restart(stuck)}" if stuck else ""
        if chunk.tries > retries:
            message = (f"Dask chunk of frames {chunk.indices[0]}-{chunk.indices[-1]} did not "
                       f"finish within {limit:.0f} s, {chunk.tries} tries (a worker stopped "
                       f"answering); run `xrd-mask reprocess {chunk.job.source.source_id}` "
                       "again for these frames")
            return [{"index": i, "error": message} for i in chunk.indices]
        again(chunk, f"did not finish within {limit:.0f} s{what}", away_from=stuck)
        return None

    def again(chunk: _Chunk, why: str, away_from: set[str] | None = None) -> None:
        submit(_Chunk(chunk.job, chunk.task, chunk.indices, 0.0, chunk.tries + 1),
               away_from=away_from)
        log.warning("xrd-mask: Dask chunk of frames %d-%d of %s %s; submitted again (try %d)",
                    chunk.indices[0], chunk.indices[-1], chunk.job.source.label, why,
                    chunk.tries + 1)

    def finished() -> Any:
        """(chunk, records) as each chunk finishes or gives up, until none is left."""
        while futures:
            try:
                wait(list(futures), timeout=min(5.0, deadline.seconds),
                     return_when="FIRST_COMPLETED")
            except (TimeoutError, CancelledError):  # look at the deadlines and the cancelled
                pass
            now = time.monotonic()
            for future, chunk in list(futures.items()):
                if future.cancelled():  # by the scheduler (a worker it held data on restarted)
                    del futures[future]
                    if chunk.tries > retries:
                        yield chunk, [{"index": i, "error": "Dask cancelled this chunk "
                                       f"{chunk.tries} times"} for i in chunk.indices]
                    else:
                        again(chunk, "was cancelled by the scheduler")
                elif future.done():
                    del futures[future]
                    try:
                        records = future.result()
                        deadline.finished(now - chunk.started)
                    except Exception as exc:  # the task itself died: its frames stay to do
                        records = [{"index": "run", "error": f"Dask task failed: "
                                                             f"{type(exc).__name__}: {exc}"}]
                    yield chunk, records
                elif now - chunk.started > deadline.seconds:
                    del futures[future]
                    records = overdue(future, chunk)
                    if records is not None:
                        yield chunk, records
            top_up()

    try:
        for chunk, records in finished():
            job = chunk.job
            sid = job.source.source_id
            ok = [r["index"] for r in records if r["index"] != "run" and r["error"] is None]
            for r in records:
                if r["error"] is not None:
                    job.errors[r["index"]] = r["error"]
            tables = {r["index"]: r["tables"] for r in records
                      if r["index"] != "run" and r["error"] is None and r.get("tables") is not None}
            if tables:
                sink.add_tables(sid, tables)
            sink.mark_done(sid, ok)
            job.summary.processed += len(ok)
            n = sum(1 for r in records if r["index"] != "run")
            bars[sid].update(n)
            total.update(n)
            remaining[sid] -= 1
            if remaining[sid] == 0:
                bars[sid].close()
                job.summary.seconds = time.perf_counter() - started[sid]
                _finish(job, sink)
    finally:
        total.close()
        for bar in bars.values():
            bar.close()


def _finish(job: Job, sink: JobSink) -> None:
    """Write the final status of a job's version from the frames its tasks reported."""
    errors = dict(job.errors)
    if "run" in errors:
        status = "failed"
    else:
        status = "complete_with_errors" if errors else "complete"
    sink.annotate(job.source.source_id, {"n_frames": job.source.n_frames})
    sink.close_run(job.source.source_id, status, errors)
    job.summary.errors = errors
