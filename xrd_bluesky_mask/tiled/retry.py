"""Riding out a Tiled outage: retry reads and writes with back-off until the server is back.

The Tiled client already retries a failed request for a while (``TILED_RETRY_ATTEMPTS``,
``TILED_RETRY_TIMEOUT``: 10 attempts within 45 s by default) and then raises. A long-running
worker must survive a longer outage (a server restart, a network cut) without losing frames:
`retry_unreachable` repeats a call that failed because the server was unreachable (connection
refused or reset, timeouts, HTTP 502, 503, 504), waiting ``first_wait`` seconds, doubling up
to ``max_wait``, for at most ``give_up_after`` seconds per call (or until stopped). Other
errors (a bad frame, a refused API key, HTTP 4xx) pass through at once. It is the one outage
mechanism of the package: `RetryingSource` (here) wraps a `FrameSource` with it,
`xrd_bluesky_mask.sinks.retry.RetryingSink` a `ResultSink` (reprocessing writes through it),
and the results journal replays through that same `RetryingSink` (live masking).

The attempts and waits are stamina's (`backoff_attempts`, also used by
`~xrd_bluesky_mask.tiled.frames.TiledFrameSource`), so ``stamina.set_testing`` makes them
instant in tests and ``stamina.set_active(False)`` turns them off. The outage is logged here,
once, not by stamina's per-retry instrumentation hooks (global; the Tiled client turns its
default logging hook off when imported).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..errors import TiledAuthError, TiledConnectionError
from ..protocols import FrameSource

__all__ = ["Outage", "RetryingSource", "backoff_attempts", "refused", "retry_unreachable",
           "unreachable"]

if TYPE_CHECKING:  # stamina (the live extra) loads with the first retried call
    import stamina

log = logging.getLogger(__name__)
T = TypeVar("T")


def unreachable(exc: BaseException) -> bool:
    """True for errors meaning "the Tiled server cannot be reached right now"."""
    import httpx

    if isinstance(exc, TiledAuthError):
        return False
    if isinstance(exc, httpx.TransportError | ConnectionError | TiledConnectionError):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status in (502, 503, 504)


def refused(exc: BaseException) -> bool:
    """True for errors meaning "the server answers but refuses our API key" (HTTP 401/403):
    e.g. a server restarted with another key. Not an outage, and not a reason to drop data."""
    if isinstance(exc, TiledAuthError):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status in (401, 403)


class Outage:
    """Logs the first failure of an outage and the recovery, not every attempt.

    ``name`` says what is unreachable in the log (``"Tiled"``, ``"result store"``);
    ``detail()`` adds what waits meanwhile (e.g. the results in a journal)."""

    def __init__(self, name: str = "Tiled", detail: Callable[[], str] | None = None) -> None:
        self.name, self.detail = name, detail
        self._lock = threading.Lock()
        self.since: float | None = None
        self.count = 0  # outages seen

    def failed(self, what: str, exc: BaseException, wait: float) -> None:
        """An attempt at ``what`` failed with ``exc``; the next comes in ``wait`` s."""
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                self.count += 1
                log.warning("%s unreachable while trying to %s (%s: %s); retrying with "
                            "back-off (next try in %.1f s)%s", self.name, what,
                            type(exc).__name__,
                            str(exc).splitlines()[0][:200] if str(exc) else "", wait,
                            self.detail() if self.detail is not None else "")

    def recovered(self) -> None:
        """An attempt succeeded: log the end of the outage, if there was one."""
        with self._lock:
            if self.since is not None:
                log.warning("%s reachable again after %.1f s; resuming%s", self.name,
                            time.monotonic() - self.since,
                            self.detail() if self.detail is not None else "")
                self.since = None


def backoff_attempts(on: Callable[[Exception], bool], *, give_up_after: float | None,
                     first_wait: float, max_wait: float) -> Iterable[stamina.Attempt]:
    """stamina's attempts at a block of code, retried while it raises an error ``on`` accepts.

    Waits start at ``first_wait`` seconds and double up to ``max_wait``, without jitter; there
    is no limit on the number of attempts, and the error of the first attempt that fails after
    ``give_up_after`` seconds is raised (``give_up_after <= 0``: a single attempt; None: no
    deadline). Use as ``for attempt in backoff_attempts(...): with attempt: ...``.
    """
    import stamina

    if give_up_after is not None and give_up_after <= 0:  # stamina reads timeout=0 as "one
        return stamina.retry_context(on=on, attempts=1, timeout=None)  # attempt" but warns
    return stamina.retry_context(on=on, attempts=None, timeout=give_up_after,
                                 wait_initial=first_wait, wait_max=max_wait, wait_jitter=0.0)


def retry_unreachable(call: Callable[[], T], what: str, *, give_up_after: float | None = 600.0,
                      first_wait: float = 0.5, max_wait: float = 10.0,
                      outage: Outage | None = None,
                      stopped: Callable[[], bool] | None = None) -> T:
    """``call()``, repeated with back-off while it fails with an `unreachable` error.

    Waits ``first_wait`` seconds, doubling up to ``max_wait``; raises the last error once an
    attempt fails after ``give_up_after`` seconds (None: never), or once ``stopped()`` is
    true. ``what`` names the call in the outage's log.
    """
    outage = outage or Outage()
    deadline = None if give_up_after is None else time.monotonic() + give_up_after

    def again(exc: Exception) -> bool:
        return unreachable(exc) and not (stopped is not None and stopped())

    for attempt in backoff_attempts(again, give_up_after=give_up_after,
                                    first_wait=first_wait, max_wait=max_wait):
        with attempt:
            try:
                result = call()
            except Exception as exc:
                if again(exc) and (deadline is None or time.monotonic() < deadline):
                    outage.failed(what, exc, attempt.next_wait)  # stamina will retry
                raise
            outage.recovered()
            return result
    raise AssertionError("stamina returns or raises from its last attempt")


class RetryingSource:
    """A `FrameSource` that waits out Tiled outages (see the module docstring): each read is
    retried for ``give_up_after`` seconds (None: until ``stopped()`` is true)."""

    def __init__(self, inner: FrameSource, *, give_up_after: float | None = 600.0,
                 first_wait: float = 0.5, max_wait: float = 10.0,
                 stopped: Callable[[], bool] | None = None) -> None:
        self.inner = inner
        self.give_up_after, self.first_wait, self.max_wait = give_up_after, first_wait, max_wait
        self.stopped = stopped
        self.outage = Outage()

    def read(self, run_uid: str, stream: str, field: str, index: int) -> np.ndarray:
        """The inner source's frame, retried while Tiled is unreachable."""
        return retry_unreachable(lambda: self.inner.read(run_uid, stream, field, index),
                                 f"read frame {index} of {run_uid}", outage=self.outage,
                                 give_up_after=self.give_up_after, first_wait=self.first_wait,
                                 max_wait=self.max_wait, stopped=self.stopped)

    def forget(self, run_uid: str) -> None:
        """The inner source's `forget` (local: nothing to retry)."""
        self.inner.forget(run_uid)
