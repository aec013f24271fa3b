"""Reprocessing in this process: the live pipeline's `Worker` (read, compute and write threads)
fed with every frame still to do, one source after the other."""

from __future__ import annotations

import time
from typing import Any

from .plan import Job, JobSink
from .sources import SeriesFrameSource

__all__ = ["run_local"]


def run_local(jobs: list[Job], root_client: Any, *, masker: Any, integration: Any, root: str,
              progress: bool = True, retry_for: float = 60.0,
              if_misoriented: str = "refuse") -> None:
    """Process every job's ``todo`` frames; results and final state go into ``job.summary``."""
    from ..pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
    from ..pipeline.worker import Worker
    from ..progress import progress as tqdm
    from ..sinks.retry import RetryingTiledSink
    from ..sinks.tiled import TiledResultSink
    from ..tiled.retry import RetryingSource

    work = [job for job in jobs if not job.up_to_date]
    source = RetryingSource(SeriesFrameSource(root_client, [j.source for j in work]),
                            give_up_after=retry_for)
    sink = JobSink(RetryingTiledSink(TiledResultSink(root_client, root=root),
                                     give_up_after=retry_for), work)
    worker = Worker(source, sink, masker=masker, integration=integration, niceness=0,
                    quiet_s=0.0, if_misoriented=if_misoriented).start()
    n_todo = sum(len(j.todo) for j in work)
    total = tqdm(total=n_todo, desc="reprocess", unit="frame", disable=not progress or n_todo == 0,
                 position=0)
    try:
        for job in work:
            src, t0 = job.source, time.perf_counter()
            bar = tqdm(total=len(job.todo), desc=src.label, unit="frame", leave=False,
                       disable=not progress, position=1)
            worker.submit(OpenRun(RunSpec(src.source_id, src.stream, src.field, src.poni,
                                          src.shape, src.n_frames, src.geometry_source)))
            for index in job.todo:
                worker.submit(FrameItem(src.source_id, src.stream, src.field, index))
            worker.submit(CloseRun(src.source_id, "reprocess", n_frames=src.n_frames))
            record = worker.records[src.source_id]
            finished = False
            while not finished:
                finished = worker.wait(0.25)
                n = len(record.frames)
                total.update(n - bar.n)
                bar.update(n - bar.n)
            bar.close()
            summary = job.summary
            summary.seconds = time.perf_counter() - t0
            summary.processed = len(record.done)
            summary.errors = dict(record.errors)
            if record.run_errors:
                summary.errors["run"] = "; ".join(record.run_errors)
            summary.status = record.status
    finally:
        total.close()
        worker.close(timeout=30)
