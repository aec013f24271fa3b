"""Yielding to the scan: the worker's stages work in the gaps between the RunEngine's documents.

The Tiled server, the CPU cores and (in-process) the GIL are shared with the RunEngine and
TiledWriter. With ``quiet_s > 0`` every stage of the `Worker` waits, before its next item,
until no document has been seen (`QuietGaps.poke`) for ``quiet_s`` seconds: the worker works in
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
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from ..errors import ConfigError

__all__ = ["AUTO_FAST_S", "AUTO_QUIET_S", "QuietGaps"]

#: Seconds without documents a stage waits for with ``quiet_s="auto"`` while frames come fast.
AUTO_QUIET_S = 0.5
#: Frames announced closer than this (mean of the last 5), s, count as back to back.
AUTO_FAST_S = 1.0


class QuietGaps:
    """When the scan last emitted a document and announced a frame, and how long a stage
    waits for quiet (module docstring).

    Parameters
    ----------
    quiet_s
        Seconds without documents before a stage takes its next item; 0 disables;
        ``"auto"``: `AUTO_QUIET_S` while frames come back to back (less than `AUTO_FAST_S`
        apart), else 0.
    """

    def __init__(self, quiet_s: float | str = 0.0) -> None:
        if isinstance(quiet_s, str) and quiet_s != "auto":
            raise ConfigError(f"quiet_s must be 'auto' or seconds >= 0, got {quiet_s!r}")
        self.quiet_s: float | str = quiet_s if quiet_s == "auto" else float(quiet_s)
        self._last_doc = 0.0
        self.announced: collections.deque[float] = collections.deque(maxlen=5)

    def poke(self) -> None:
        """Note that the RunEngine just emitted a document."""
        self._last_doc = time.monotonic()

    def frame_announced(self) -> None:
        """Note that a frame was just announced (its pace sets ``"auto"``)."""
        self.announced.append(time.monotonic())

    def quiet(self) -> float:
        """The seconds without documents a stage waits for now (``quiet_s``; for ``"auto"``
        `AUTO_QUIET_S` while frames come less than `AUTO_FAST_S` apart, else 0)."""
        if self.quiet_s != "auto":
            return float(self.quiet_s)
        times = list(self.announced)
        if len(times) < 2:  # nothing says the frames come back to back
            return 0.0
        interval = (times[-1] - times[0]) / (len(times) - 1)
        return AUTO_QUIET_S if interval < AUTO_FAST_S else 0.0

    def wait(self, stop: Callable[[], bool]) -> None:
        """Wait until no document has been seen for `quiet` seconds, or ``stop()`` is true."""
        while (quiet := self.quiet()) > 0:
            idle = time.monotonic() - self._last_doc
            if idle >= quiet or stop():
                return
            time.sleep(quiet - idle)
