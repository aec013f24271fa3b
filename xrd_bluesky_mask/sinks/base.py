"""The shared base of sink wrappers: a `ResultSink` in front of another, typed.

A wrapper (the journal, the retrying sink, reprocessing's job bookkeeping) changes one or two
calls and passes the others on unchanged. `SinkWrapper` passes every `ResultSink` call to
``inner``, so a wrapper overrides only what it changes; it is generic in the wrapped sink's
type, so a wrapper around a `TiledResultSink` reaches the Tiled-only calls (``attach``,
``mark_done``…) through a typed ``inner`` rather than ``getattr``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from ..protocols import ResultSink

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["SinkWrapper"]

S = TypeVar("S", bound=ResultSink)


class SinkWrapper(Generic[S]):
    """A `ResultSink` passing every call to ``inner`` (override what the wrapper changes)."""

    def __init__(self, inner: S) -> None:
        self.inner: S = inner

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """``inner.open_run``."""
        self.inner.open_run(source_uid, metadata)

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """``inner.write``."""
        self.inner.write(source_uid, index, mask_codes, pattern, tables=tables)

    def annotate(self, source_uid: str, fields: dict[str, Any]) -> None:
        """``inner.annotate``."""
        self.inner.annotate(source_uid, fields)

    def done(self, source_uid: str) -> set[int]:
        """``inner.done``."""
        return self.inner.done(source_uid)

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """``inner.close_run``."""
        self.inner.close_run(source_uid, status, errors)
