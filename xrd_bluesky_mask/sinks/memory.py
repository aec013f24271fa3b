"""The `~xrd_bluesky_mask.protocols.ResultSink` that keeps results in memory (tests, offline
use, and the simplest implementation of the protocol)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ..spots import FrameTables

__all__ = ["InMemoryResultSink"]


class InMemoryResultSink:
    """Keeps results in dictionaries (tests, offline use).

    Attributes
    ----------
    metadata
        source uid → metadata (with ``status``, ``errors``, ``frames_done`` once closed).
    masks
        source uid → {frame index → uint8 mask codes}.
    patterns
        source uid → {frame index → `xarray.DataArray`}.
    tables
        source uid → {frame index → `FrameTables`} (frames written with tables).
    """

    def __init__(self) -> None:
        self.metadata: dict[str, dict[str, Any]] = {}
        self.masks: dict[str, dict[int, np.ndarray]] = {}
        self.patterns: dict[str, dict[int, Any]] = {}
        self.tables: dict[str, dict[int, FrameTables]] = {}
        self._lock = threading.Lock()

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Record the run's metadata (status "running")."""
        with self._lock:
            self.metadata[source_uid] = {**metadata, "status": "running"}
            self.masks.setdefault(source_uid, {})
            self.patterns.setdefault(source_uid, {})
            self.tables.setdefault(source_uid, {})

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """Keep a copy of frame ``index``'s mask codes, pattern and tables (a frame written
        again replaces them)."""
        with self._lock:
            self.masks[source_uid][int(index)] = np.array(mask_codes, dtype=np.uint8)
            self.patterns[source_uid][int(index)] = pattern
            if tables is not None:
                self.tables[source_uid][int(index)] = tables.at(index)
            else:
                self.tables[source_uid].pop(int(index), None)

    def run_tables(self, source_uid: str) -> dict[str, pd.DataFrame]:
        """The run's ``spots``, ``frames`` and ``texture`` tables as `TiledResultSink` stores
        them (`xrd_bluesky_mask.spots.run_tables`, similarity from the float32 patterns)."""
        from ..spots import run_tables

        with self._lock:
            tables = dict(self.tables.get(source_uid, {}))
            rows = {i: np.asarray(p.values, np.float32)
                    for i, p in self.patterns.get(source_uid, {}).items()}
        return run_tables(tables, rows)

    def annotate(self, source_uid: str, fields: dict[str, Any]) -> None:
        """Progress fields for the run's metadata (lag, scan exit status, ``n_frames``)."""
        with self._lock:
            if source_uid in self.metadata:
                self.metadata[source_uid].update(fields)

    def done(self, source_uid: str) -> set[int]:
        """Frames of ``source_uid`` written so far (empty for a run never opened)."""
        with self._lock:
            return set(self.masks.get(source_uid, {}))

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """Record the final status and errors."""
        with self._lock:
            md = self.metadata[source_uid]
            md.update(status=status, errors={str(k): v for k, v in errors.items()},
                      frames_done=sorted(self.masks[source_uid]),
                      n_frames_done=len(self.masks[source_uid]))
