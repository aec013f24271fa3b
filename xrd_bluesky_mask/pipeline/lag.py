"""How far the worker is behind the scan, per run: frames announced and not yet finished, and
the seconds from a frame's announcement to its result.

The worker holds at most its read-ahead of frames in memory however far behind it is (the
frames it has not read yet are a few bytes each, naming data that lives in Tiled), and masks
what is waiting in batches (`Worker`'s ``batch``). The lag is reported on the derived node
(``lag_frames``, ``lag_s``, about once a second) and in the log (a warning once it passes
``warn_after_s``, repeated every ``log_every_s`` while it lasts, and a line when caught up).

Sizing: the report also carries the rate the frames come at (``frame_rate_hz``, from their
announcements), what one frame costs to compute (``frame_cost_s``, mask + integrate + tables on
one thread: the median of the last `COST_WINDOW` frames; a Dask worker builds the run's engine
and tables before its first frame and reports those seconds apart, `fanout.compute_frame`)
and from both the threads that keep up with the scan:
``workers_needed`` = ceil(rate x cost), against ``workers`` (1 in-process; the Dask workers'
threads when the frames fan out over a cluster). The lag stays flat while ``workers`` >=
``workers_needed``; the warning says how many more it takes.
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COST_WINDOW", "LagMeter"]

log = logging.getLogger(__name__)

#: Frames whose compute seconds make ``frame_cost_s`` (their median).
COST_WINDOW = 16


@dataclass
class _RunLag:
    announced: int = 0
    finished: int = 0
    top: int = -1  # highest frame index announced
    first_t: float = 0.0  # when the first frame was announced (perf_counter)
    last_t: float = 0.0  # when the last one was
    costs: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=COST_WINDOW))  # compute seconds
    last_report: float = float("-inf")
    last_log: float = float("-inf")
    warned: bool = False


class LagMeter:
    """Counts of one worker's frames per run (thread-safe; `announced` is cheap enough for the
    RunEngine's thread)."""

    def __init__(self, *, warn_after_s: float = 10.0, report_every_s: float = 1.0,
                 log_every_s: float = 30.0) -> None:
        self.warn_after_s, self.report_every_s = warn_after_s, report_every_s
        self.log_every_s = log_every_s
        self._runs: dict[str, _RunLag] = {}
        self._lock = threading.Lock()

    def announced(self, run: str, index: int) -> None:
        """Frame ``index`` of ``run`` was submitted."""
        with self._lock:
            lag = self._runs.setdefault(run, _RunLag())
            now = time.perf_counter()
            if lag.announced == 0:
                lag.first_t = now
            lag.announced += 1
            lag.last_t = now
            lag.top = max(lag.top, index)

    def finished(self, run: str, t_submitted: float, *, cost_s: float | None = None,
                 workers: int = 1) -> dict[str, Any] | None:
        """A frame submitted at ``t_submitted`` (`time.perf_counter`) has its result (or its
        error); ``cost_s``: the seconds its computation took on one thread (None: failed);
        ``workers``: the threads computing frames now. Returns the fields to report on the
        derived node when a report is due."""
        now = time.perf_counter()
        seconds = max(0.0, now - t_submitted)
        with self._lock:
            lag = self._runs.setdefault(run, _RunLag())
            lag.finished += 1
            if cost_s is not None and cost_s > 0:
                lag.costs.append(cost_s)
            behind = max(0, lag.announced - lag.finished)
            sizing = self._sizing(lag, workers)
            if seconds >= self.warn_after_s and now - lag.last_log >= self.log_every_s:
                lag.last_log, lag.warned = now, True
                need = sizing.get("workers_needed")
                advice = "" if need is None or need <= workers else (
                    f"; frames come at {sizing['frame_rate_hz']:.2f}/s and take "
                    f"{sizing['frame_cost_s']:.2f} s each: keeping up takes {need} workers "
                    f"(--workers {need} or a Dask cluster of {need} threads; now {workers}), "
                    "or the U-Net on a GPU")
                log.warning("xrd-mask: run %s: %d frames (%.1f s) behind the scan; waiting "
                            "frames are masked in batches and none is held in memory beyond "
                            "the read-ahead%s", run, behind, seconds, advice)
            elif lag.warned and behind == 0:
                lag.warned = False
                log.info("xrd-mask: run %s: caught up with the scan", run)
            if now - lag.last_report < self.report_every_s:
                return None
            lag.last_report = now
        return {"lag_frames": behind, "lag_s": round(seconds, 3), **sizing}

    @staticmethod
    def _sizing(lag: _RunLag, workers: int) -> dict[str, Any]:
        """Rate, cost per frame and the threads that keep up (empty until both are known)."""
        if lag.announced < 2 or lag.last_t <= lag.first_t or not lag.costs:
            return {}
        rate = (lag.announced - 1) / (lag.last_t - lag.first_t)
        cost = statistics.median(lag.costs)
        return {"frame_rate_hz": round(rate, 3), "frame_cost_s": round(cost, 3),
                "workers": workers, "workers_needed": max(1, math.ceil(rate * cost))}

    def sizing(self, run: str, workers: int = 1) -> dict[str, Any]:
        """``frame_rate_hz``, ``frame_cost_s``, ``workers`` and ``workers_needed`` of ``run``
        so far (empty before two frames were announced and one computed)."""
        with self._lock:
            lag = self._runs.get(run)
            return self._sizing(lag, workers) if lag is not None else {}

    def frames_seen(self, run: str) -> int:
        """Frames of ``run`` that exist as far as the worker knows (highest index + 1)."""
        with self._lock:
            lag = self._runs.get(run)
            return lag.top + 1 if lag is not None else 0

    def forget(self, run: str) -> None:
        """Drop the run's counts (after its close)."""
        with self._lock:
            self._runs.pop(run, None)
