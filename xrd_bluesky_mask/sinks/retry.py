"""A `ResultSink` that waits out outages of its store: every call that fails because the store
is unreachable is repeated with back-off (`xrd_bluesky_mask.tiled.retry.retry_unreachable`).

This is the package's one outage mechanism for results. Reprocessing writes through a
`RetryingTiledSink` (``give_up_after`` seconds per call, then the frame fails and ``reprocess``
again redoes it); live masking keeps every result in the journal first
(`xrd_bluesky_mask.sinks.journaled`), whose replay thread writes through a `RetryingSink` with no
deadline, stopped only when the journal closes. The sinks' requests are safe to repeat (see
`xrd_bluesky_mask.sinks.tiled`), so a frame is never written twice in a way that shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..protocols import ResultSink
from ..tiled.retry import Outage, retry_unreachable
from .base import SinkWrapper
from .tiled import TiledResultSink

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["RetryingSink", "RetryingTiledSink"]

S = TypeVar("S", bound=ResultSink)
T = TypeVar("T")


class RetryingSink(SinkWrapper[S]):
    """A `ResultSink` whose calls are repeated while its store is unreachable.

    Parameters
    ----------
    inner
        The sink written to.
    give_up_after
        Seconds per call before the last error is raised; None: retry until ``stopped()``.
    first_wait, max_wait
        Back-off: the first wait, doubled up to ``max_wait`` seconds.
    stopped
        Retrying ends (the last error is raised) once this returns True.
    outage
        Where the outage is logged (its name, what waits meanwhile); by default "Tiled".
    """

    def __init__(self, inner: S, *, give_up_after: float | None = 600.0,
                 first_wait: float = 0.5, max_wait: float = 10.0,
                 stopped: Callable[[], bool] | None = None,
                 outage: Outage | None = None) -> None:
        super().__init__(inner)
        self.give_up_after, self.first_wait, self.max_wait = give_up_after, first_wait, max_wait
        self.stopped = stopped
        self.outage = outage or Outage()

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return retry_unreachable(call, what, give_up_after=self.give_up_after,
                                 first_wait=self.first_wait, max_wait=self.max_wait,
                                 outage=self.outage, stopped=self.stopped)

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Open (or resume) the results, retried while the store is unreachable."""
        self._call(f"open results of {source_uid}",
                   lambda: self.inner.open_run(source_uid, metadata))

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """Write one frame's results, retried while the store is unreachable."""
        self._call(f"write frame {index} of {source_uid}",
                   lambda: self.inner.write(source_uid, index, mask_codes, pattern,
                                            tables=tables))

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """Finish the results, retried while the store is unreachable."""
        self._call(f"finish results of {source_uid}",
                   lambda: self.inner.close_run(source_uid, status, errors))


class RetryingTiledSink(RetryingSink[TiledResultSink]):
    """A `RetryingSink` around a `TiledResultSink`, with its calls for several processes writing
    one version (reprocessing on Dask) retried likewise."""

    def mark_done(self, source_uid: str, indices: Iterable[int]) -> None:
        """Record frames written elsewhere (`TiledResultSink.mark_done`)."""
        done = list(indices)
        self._call(f"record progress of {source_uid}",
                   lambda: self.inner.mark_done(source_uid, done))

    def add_tables(self, source_uid: str, tables: Mapping[int, FrameTables]) -> None:
        """Record table rows of frames written elsewhere (`TiledResultSink.add_tables`)."""
        self._call(f"record tables of {source_uid}",
                   lambda: self.inner.add_tables(source_uid, tables))

    def flush(self, source_uid: str) -> None:
        """Write queued rows now (`TiledResultSink.flush`)."""
        self._call(f"flush results of {source_uid}", lambda: self.inner.flush(source_uid))

    def attach(self, source_uid: str, path: str, frames_expected: int | None = None) -> None:
        """Write into a version another process opened (`TiledResultSink.attach`)."""
        self._call(f"open results {path}",
                   lambda: self.inner.attach(source_uid, path, frames_expected))

    def result_path(self, source_uid: str) -> str:
        """Path of the version opened for ``source_uid`` (known locally)."""
        return self.inner.result_path(source_uid)

    def result_version(self, source_uid: str) -> int:
        """``result_version`` of the version opened for ``source_uid`` (known locally)."""
        return self.inner.result_version(source_uid)
