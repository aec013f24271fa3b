"""How far the worker is behind the scan, per run: frames announced and not yet finished, and
the seconds from a frame's announcement to its result.

The worker holds at most its read-ahead of frames in memory however far behind it is (the
frames it has not read yet are a few bytes each, naming data that lives in Tiled), and masks
what is waiting in batches (`Worker`'s ``batch``). The lag is reported on the derived node
(``lag_frames``, ``lag_s``, about once a second) and in the log (a warning once it passes
``warn_after_s``, repeated every ``log_every_s`` while it lasts, and a line when caught up).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["LagMeter"]

log = logging.getLogger(__name__)


@dataclass
class _RunLag:
    announced: int = 0
    finished: int = 0
    top: int = -1  # highest frame index announced
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
            lag.announced += 1
            lag.top = max(lag.top, index)

    def finished(self, run: str, t_submitted: float) -> dict[str, Any] | None:
        """A frame submitted at ``t_submitted`` (`time.perf_counter`) has its result (or its
        error). Returns the fields to report on the derived node when a report is due."""
        now = time.perf_counter()
        seconds = max(0.0, now - t_submitted)
        with self._lock:
            lag = self._runs.setdefault(run, _RunLag())
            lag.finished += 1
            behind = max(0, lag.announced - lag.finished)
            if seconds >= self.warn_after_s and now - lag.last_log >= self.log_every_s:
                lag.last_log, lag.warned = now, True
                log.warning("xrd-mask: run %s: %d frames (%.1f s) behind the scan; waiting "
                            "frames are masked in batches and none is held in memory beyond "
                            "the read-ahead", run, behind, seconds)
            elif lag.warned and behind == 0:
                lag.warned = False
                log.info("xrd-mask: run %s: caught up with the scan", run)
            if now - lag.last_report < self.report_every_s:
                return None
            lag.last_report = now
        return {"lag_frames": behind, "lag_s": round(seconds, 3)}

    def frames_seen(self, run: str) -> int:
        """Frames of ``run`` that exist as far as the worker knows (highest index + 1)."""
        with self._lock:
            lag = self._runs.get(run)
            return lag.top + 1 if lag is not None else 0

    def forget(self, run: str) -> None:
        """Drop the run's counts (after its close)."""
        with self._lock:
            self._runs.pop(run, None)
