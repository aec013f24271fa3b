"""Riding out a Tiled outage: retry reads and writes with back-off until the server is back.

The Tiled client already retries a failed request for a while (``TILED_RETRY_ATTEMPTS``,
``TILED_RETRY_TIMEOUT``: 10 attempts within 45 s by default) and then raises. A long-running
worker must survive a longer outage (a server restart, a network cut) without losing frames:
`RetryingSource` and `RetryingSink` wrap a `FrameSource` / `ResultSink` and repeat a call that
failed because the server was unreachable (connection refused or reset, timeouts, HTTP 502, 503,
504), waiting ``first_wait`` seconds, doubling up to ``max_wait``, for at most ``give_up_after``
seconds per call. Other errors (a bad frame, a refused API key, HTTP 4xx) pass through at once.
The sink's requests are safe to repeat (see `xrd_bluesky_mask.tiled.sink`), so a frame is never
written twice in a way that shows: a repeated write stores the same bytes at the same place.

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
from typing import Any, TypeVar

import stamina

from ..errors import TiledAuthError, TiledConnectionError

__all__ = ["RetryingSink", "RetryingSource", "backoff_attempts", "retry_unreachable",
           "unreachable"]

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


class _Outage:
    """Logs the first failure of an outage and the recovery, not every attempt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.count = 0  # outages seen

    def failed(self, what: str, exc: BaseException, wait: float) -> None:
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                self.count += 1
                log.warning("Tiled unreachable while trying to %s (%s: %s); retrying with "
                            "back-off (next try in %.1f s)", what, type(exc).__name__,
                            str(exc).splitlines()[0][:200] if str(exc) else "", wait)

    def recovered(self) -> None:
        with self._lock:
            if self.since is not None:
                log.warning("Tiled reachable again after %.1f s; resuming",
                            time.monotonic() - self.since)
                self.since = None


def backoff_attempts(on: Callable[[Exception], bool], *, give_up_after: float,
                     first_wait: float, max_wait: float) -> Iterable[stamina.Attempt]:
    """stamina's attempts at a block of code, retried while it raises an error ``on`` accepts.

    Waits start at ``first_wait`` seconds and double up to ``max_wait``, without jitter; there
    is no limit on the number of attempts, and the error of the first attempt that fails after
    ``give_up_after`` seconds is raised (``give_up_after <= 0``: a single attempt). Use as
    ``for attempt in backoff_attempts(...): with attempt: ...``.
    """
    if give_up_after <= 0:  # stamina reads timeout=0 as "one attempt" too, but warns
        return stamina.retry_context(on=on, attempts=1, timeout=None)
    return stamina.retry_context(on=on, attempts=None, timeout=give_up_after,
                                 wait_initial=first_wait, wait_max=max_wait, wait_jitter=0.0)


def retry_unreachable(call: Callable[[], T], what: str, *, give_up_after: float = 600.0,
                      first_wait: float = 0.5, max_wait: float = 10.0,
                      outage: _Outage | None = None) -> T:
    """``call()``, repeated with back-off while it fails with an `unreachable` error.

    Waits ``first_wait`` seconds, doubling up to ``max_wait``; raises the last error once an
    attempt fails after ``give_up_after`` seconds. ``what`` names the call in the outage's log.
    """
    outage = outage or _Outage()
    deadline = time.monotonic() + give_up_after
    for attempt in backoff_attempts(unreachable, give_up_after=give_up_after,
                                    first_wait=first_wait, max_wait=max_wait):
        with attempt:
            try:
                result = call()
            except Exception as exc:
                if unreachable(exc) and time.monotonic() < deadline:  # stamina will retry
                    outage.failed(what, exc, attempt.next_wait)
                raise
            outage.recovered()
            return result
    raise AssertionError("stamina returns or raises from its last attempt")


class _Retrying:
    def __init__(self, inner: Any, *, give_up_after: float = 600.0, first_wait: float = 0.5,
                 max_wait: float = 10.0) -> None:
        self.inner = inner
        self._kw = {"give_up_after": give_up_after, "first_wait": first_wait,
                    "max_wait": max_wait}
        self.outage = _Outage()

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return retry_unreachable(lambda: fn(*args), what, outage=self.outage, **self._kw)


class RetryingSource(_Retrying):
    """A `FrameSource` that waits out Tiled outages (see the module docstring)."""

    def read(self, run_uid: str, stream: str, field: str, index: int) -> Any:
        """The inner source's frame, retried while Tiled is unreachable."""
        return self._call(f"read frame {index} of {run_uid}", self.inner.read, run_uid, stream,
                          field, index)

    def forget(self, run_uid: str) -> None:
        """The inner source's `forget` (local: nothing to retry)."""
        self.inner.forget(run_uid)


class RetryingSink(_Retrying):
    """A `ResultSink` that waits out Tiled outages (see the module docstring)."""

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Open (or resume) the results, retried while Tiled is unreachable."""
        self._call(f"open results of {source_uid}", self.inner.open_run, source_uid, metadata)

    def write(self, source_uid: str, index: int, mask_codes: Any, pattern: Any) -> None:
        """Write one frame's results, retried while Tiled is unreachable."""
        self._call(f"write frame {index} of {source_uid}", self.inner.write, source_uid, index,
                   mask_codes, pattern)

    def close_run(self, source_uid: str, status: str, errors: dict[int, str]) -> None:
        """Finish the results, retried while Tiled is unreachable."""
        self._call(f"finish results of {source_uid}", self.inner.close_run, source_uid, status,
                   errors)

    def annotate(self, source_uid: str, fields: dict[str, Any]) -> None:
        """Progress fields for the next metadata write (`TiledResultSink.annotate`; local)."""
        annotate = getattr(self.inner, "annotate", None)
        if annotate is not None:
            annotate(source_uid, fields)

    def mark_done(self, source_uid: str, indices: Any) -> None:
        """Record frames written elsewhere (`TiledResultSink.mark_done`), retried likewise."""
        indices = list(indices)
        self._call(f"record progress of {source_uid}", self.inner.mark_done, source_uid,
                   indices)

    def flush(self, source_uid: str) -> None:
        """Write queued rows now (`TiledResultSink.flush`), retried likewise."""
        self._call(f"flush results of {source_uid}", self.inner.flush, source_uid)

    def attach(self, source_uid: str, path: str, frames_expected: int | None = None) -> None:
        """Write into a version another process opened (`TiledResultSink.attach`), retried
        likewise."""
        self._call(f"open results {path}", self.inner.attach, source_uid, path,
                   frames_expected)

    def done(self, source_uid: str) -> set[int]:
        """Frames with results written (`TiledResultSink.done`; known locally)."""
        return self.inner.done(source_uid)

    def result_path(self, source_uid: str) -> str:
        """Path of the version opened for ``source_uid`` (known locally)."""
        return self.inner.result_path(source_uid)

    def result_version(self, source_uid: str) -> int:
        """``result_version`` of the version opened for ``source_uid`` (known locally)."""
        return self.inner.result_version(source_uid)
