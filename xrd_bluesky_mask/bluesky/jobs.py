"""Slow work a plan runs in a thread and polls, so the RunEngine stays responsive meanwhile.

A `Job` runs a function in a daemon thread; `wait_job` is the plan side: it polls the job with
``checkpoint`` + ``sleep`` messages (Ctrl-C pauses, ``RE.abort()`` stops), emits what the job
publishes as it comes (the job waits until it is emitted, so a paused plan holds the work) and
returns the job's result, or raises its error. `cleanup_after` deletes a job's work folder
once its thread has stopped.
"""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

__all__ = ["Job", "cleanup_after", "wait_job"]


class Job:
    """A function run in a daemon thread; the plan polls it and receives its progress."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        self.progress: queue.SimpleQueue = queue.SimpleQueue()
        self.stop = threading.Event()
        self._ack = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                       name=f"xrd-mask-{name}")
        self.thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._result = fn(self, *args)
        except BaseException as exc:  # handed to the plan
            self._error = exc

    def publish(self, record: Any) -> None:
        """From the thread: hand ``record`` to the plan and wait until it is emitted (so a
        paused plan holds the work)."""
        from ..errors import Cancelled

        self._ack.clear()
        self.progress.put(record)
        while not self._ack.wait(0.2):
            if self.stop.is_set():
                raise Cancelled("stopped while waiting for the plan")

    def acknowledge(self) -> None:
        """From the plan: the last record is emitted; the thread may go on."""
        self._ack.set()

    def result(self) -> Any:
        """The function's return value, or its exception raised."""
        if self._error is not None:
            raise self._error
        return self._result


def wait_job(job: Job, poll_s: float,
             on_progress: Callable[[Any], MsgGenerator] | None = None) -> MsgGenerator:
    """Poll ``job`` until it ends (emitting its progress), then return its result."""
    while True:
        finished = not job.thread.is_alive()
        while True:
            try:
                record = job.progress.get_nowait()
            except queue.Empty:
                break
            if on_progress is not None:
                yield from on_progress(record)
            job.acknowledge()
        if finished:
            return job.result()
        yield from bps.checkpoint()
        yield from bps.sleep(poll_s)


def cleanup_after(job: Job | None, workdir: Path) -> None:
    """Delete the work folder once the job's thread (if still running) has stopped."""
    if job is None or not job.thread.is_alive():
        shutil.rmtree(workdir, ignore_errors=True)
        return

    def later() -> None:
        job.thread.join()
        shutil.rmtree(workdir, ignore_errors=True)

    threading.Thread(target=later, daemon=True, name="xrd-mask-retrain-cleanup").start()
