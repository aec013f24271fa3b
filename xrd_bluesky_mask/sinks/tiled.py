"""The `~xrd_bluesky_mask.protocols.ResultSink` that writes results into Tiled.

`TiledResultSink` writes the layout described in `xrd_bluesky_mask.tiled.results`. `open_run`
picks the result *version*: the existing one whose settings (`results.settings_id`) equal the
new metadata's is resumed (its ``frames_done`` kept); otherwise the next version is created
beside the others (``<key>``, ``<key>_v2``, ...). Creation is create-first with HTTP 409 handled,
so processes opening the same source at once end up in one version per settings.

Arrays hold exactly the frames that exist, one chunk per frame: the owner (the live worker,
local reprocessing) grows them as frames arrive (``patch(..., extend=True)``), and a frame
written past the end first fills the rows between with "not computed" (mask code 3, NaN pattern
rows), so no row reads like a result it is not; `close_run` extends them to the source's
``n_frames`` (`annotate`) the same way and marks every row still without a result. (A scan
announcing 30 frames and aborted after 14 ends with 14 rows.) Attached writers (Dask tasks,
whose frames all exist) preallocate to ``frames_expected`` and fill blocks with ``write_block``;
the owner's `close_run` marks the rows that got no result. Frames may arrive in any order.
Arrays (and the pattern's coordinates) are get-or-create, so several writers may share a version.
A version whose arrays the server cannot create (`StorageBlocked`: storage left by a server killed
mid-creation) before any frame is written in it is marked ``superseded`` and the run goes on in
the next version, which `find_results` returns from then on.

To spare the server (which also serves TiledWriter during the scan), a frame's mask is written
at once but its pattern rows are queued and flushed every ``progress_interval`` seconds (one
request per array for each run of consecutive frames), followed by the progress metadata
(``frames_done``, without keeping metadata revisions, and the fields given to `annotate`: lag,
results waiting in a journal, the scan's exit status). A frame is listed in ``frames_done`` once
its mask and pattern are both written; `close_run` flushes and writes the final state.

Every request may be repeated after a failure without harm (a `RetryingSink` does that through
a Tiled outage): queued rows stay queued until written, and progress metadata is sent as a JSON
*merge* patch (whole lists replaced), never as index-based JSON-patch operations.

Several processes writing one version (Dask): one of them, the *owner*, calls `open_run`,
`mark_done` and `close_run` and is the only one writing metadata; the others `attach` to the
version's path and only write arrays (`write`, `flush`).

Tables (``spots``, ``frames``, ``texture``: `xrd_bluesky_mask.spots.run_tables`) are table
nodes of the version, written by the owner alone from the rows it holds keyed by frame (a frame
written again replaces its rows): rewritten whole (one request per table, idempotent) with the
progress, at most every ``progress_interval`` s and no more often than 10 times the seconds
their last write took, and at `close_run` before the final status, so they are complete when
the status says so. A resumed version starts from the rows already stored. Attached writers
write no tables: their frames' rows reach the owner through `add_tables`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocols import MaskCode
from ..tiled.nodes import conflict, container_at
from ..tiled.results import DEFAULT_ROOT, node_path, version_of
from .tiled_layout import (
    KEPT_ON_RESUME,
    Arrays,
    RunState,
    StorageBlocked,
    ensure_mask,
    ensure_pattern,
    load_arrays,
    load_tables,
    merge_metadata,
    open_version,
    supersede,
)

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["TiledResultSink"]

log = logging.getLogger(__name__)

#: Rows filled per request when marking frames without a result.
_FILL_ROWS = 8
#: Table writes take at most this share of the time between them.
_TABLE_SHARE = 0.1


class TiledResultSink:
    """Writes derived results into Tiled (layout: `xrd_bluesky_mask.tiled.results`).

    Parameters
    ----------
    client
        Any tiled client node on the server; results go under ``root`` from the server's root.
    root
        Path of the results root, e.g. ``"derived/xrd_mask"``; each level is created if missing.
    progress_interval
        Seconds between flushes of pattern rows and progress metadata while a run is written.
    """

    def __init__(self, client: Any, *, root: str = DEFAULT_ROOT,
                 progress_interval: float = 1.0) -> None:
        from tiled.client import from_context

        from ..tiled.connect import tiled_errors

        self._errors = tiled_errors
        self.uri = str(client.context.api_uri)
        with self._errors(self.uri, "open the results root"):
            self.client = from_context(client.context)
        self.root = root.strip("/")
        self.progress_interval = progress_interval
        self._runs: dict[str, RunState] = {}
        self._lock = threading.Lock()
        self._root_node: Any = None

    def _root(self) -> Any:
        if self._root_node is None:
            self._root_node = container_at(self.client, self.root)
        return self._root_node

    # -- opening ------------------------------------------------------------------------
    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Open the version of ``source_uid``'s results matching ``metadata``'s settings:
        resume it (``frames_done`` kept) or create the next version (status "running")."""
        with self._lock, self._errors(self.uri, f"create results for run {source_uid}"):
            node, created = open_version(self._root(), source_uid, metadata, self.root)
            state = RunState(node, metadata.get("frames_expected"),
                             version=version_of(node.metadata))
            shape = metadata.get("frame_shape_px")
            state.frame_shape = (int(shape[0]), int(shape[1])) if shape else None
            if not created:  # resumed (a restarted worker, a repeated reprocess)
                state.done = {int(i) for i in node.metadata.get("frames_done", [])}
                node.update_metadata({k: v for k, v in metadata.items()
                                      if k not in KEPT_ON_RESUME})
                load_arrays(state)
                load_tables(state)
            self._runs[source_uid] = state

    def attach(self, source_uid: str, path: str, frames_expected: int | None = None) -> None:
        """Write arrays into an existing version at ``path`` (from the server root), opened by
        another process's `open_run`; this sink then writes no metadata."""
        with self._lock, self._errors(self.uri, f"open results {path}"):
            node = self.client[path]
            state = RunState(node, frames_expected, version=version_of(node.metadata),
                             owner=False)
            load_arrays(state)
            self._runs[source_uid] = state

    def result_path(self, source_uid: str) -> str:
        """Path from the server root of the version opened for ``source_uid``."""
        return node_path(self._state(source_uid).node)

    def result_version(self, source_uid: str) -> int:
        """``result_version`` of the version opened for ``source_uid``."""
        return self._state(source_uid).version

    def done(self, source_uid: str) -> set[int]:
        """Frames of ``source_uid`` with results written (from earlier sessions too); empty
        for a run not open here."""
        state = self._runs.get(source_uid)
        return set(state.done) if state is not None else set()

    def _state(self, source_uid: str) -> RunState:
        state = self._runs.get(source_uid)
        if state is None:
            raise RuntimeError(f"results of {source_uid!r} used before open_run/attach")
        return state

    # -- writing ------------------------------------------------------------------------
    def _ensure_arrays(self, state: RunState, index: int, shape: tuple[int, ...],
                       pattern: Any) -> None:
        """Create the mask (and, given a ``pattern``, the pattern) arrays if missing
        (`ensure_mask`, `ensure_pattern`); a new mask's rows before ``index`` hold no result
        yet. Storage the server cannot create (`StorageBlocked`) in a version of this owner
        with no frame written yet: the run moves to a new version (`supersede`)."""
        try:
            self._create_arrays(state, index, shape, pattern)
        except StorageBlocked as exc:
            if not state.owner or state.done or state.pending:
                raise
            supersede(self._root(), self.root, state, exc)
            self._create_arrays(state, index, shape, pattern)

    def _create_arrays(self, state: RunState, index: int, shape: tuple[int, ...],
                       pattern: Any) -> None:
        if ensure_mask(state, index, shape) and state.owner:
            assert state.mask is not None
            self._fill(state, list(range(min(index, state.mask.length))))
        if pattern is not None:
            ensure_pattern(state, index, pattern)

    @staticmethod
    def _put(arrays: Arrays, index: int, rows: np.ndarray, fill: Any = None) -> list[int]:
        """Write ``rows`` (frames ``index, index+1, ...``), extending the array if needed; rows
        between the end and ``index`` are written as ``fill`` (one request). Returns them."""
        gap = list(range(arrays.length, index)) if fill is not None else []
        if gap:
            rows = np.concatenate([np.full((len(gap), *rows.shape[1:]), fill, rows.dtype),
                                   rows])
            index = gap[0]
        end = index + rows.shape[0]
        if rows.shape[0] == 1 and end <= arrays.length:
            arrays.client.write_block(rows, block=(index, *([0] * (rows.ndim - 1))))
        else:
            arrays.client.patch(rows, offset=(index,), extend=end > arrays.length)
            arrays.length = max(arrays.length, end)
        return gap

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """Write frame ``index``'s mask codes (uint8) now; queue its pattern (float32
        intensity and sigma) and, for the owner, its ``tables`` for the next flush (every
        ``progress_interval`` s, and at close). Writing a frame again writes the same rows."""
        state = self._runs.get(source_uid)
        if state is None:
            raise RuntimeError(f"write({source_uid!r}, {index}) before open_run({source_uid!r})")
        codes = np.ascontiguousarray(mask_codes, dtype=np.uint8)
        intensity = np.asarray(pattern.values, dtype=np.float32)
        sigma = (np.asarray(pattern.coords["sigma"].values, dtype=np.float32)
                 if "sigma" in pattern.coords else np.full_like(intensity, np.nan))
        with self._lock, self._errors(self.uri, f"write frame {index} of run {source_uid}"):
            self._ensure_arrays(state, index, codes.shape, pattern)
            assert state.mask is not None
            bins = state.pattern["intensity"].client.shape[1]
            if intensity.shape[0] != bins:
                raise ValueError(
                    f"frame {index} pattern has {intensity.shape[0]} bins, the stored patterns "
                    f"have {bins}: keep one IntegrationSettings per run."
                )
            fill = MaskCode.NOT_COMPUTED if state.owner else None
            state.filled.update(self._put(state.mask, index, codes[None], fill))
            state.filled.discard(int(index))
            state.pending[int(index)] = (intensity, sigma)
            if state.owner:
                state.intensities[int(index)] = intensity
                if tables is not None:
                    state.tables[int(index)] = tables.at(index)
                else:
                    state.tables.pop(int(index), None)
                state.tables_changed = True
            if time.monotonic() - state.last_progress >= self.progress_interval:
                self._flush(state)

    def annotate(self, source_uid: str, fields: dict[str, Any]) -> None:
        """Fields for the run's metadata, written with the next progress (no request now):
        ``lag_frames``, ``lag_s``, ``frames_pending`` (results waiting in a journal),
        ``scan_exit_status``, ``scan_reason``; ``n_frames`` (frames the source has) also sets
        the rows `close_run` leaves. Ignored for a run not open here."""
        with self._lock:
            state = self._runs.get(source_uid)
            if state is not None:
                state.extra.update(fields)

    def flush(self, source_uid: str) -> None:
        """Write the queued pattern rows of ``source_uid`` now (and progress, if the owner)."""
        with self._lock, self._errors(self.uri, f"flush results of {source_uid}"):
            self._flush(self._state(source_uid))

    def mark_done(self, source_uid: str, indices: Any) -> None:
        """Record frames whose results another process wrote (the owner of a shared version);
        progress metadata follows every ``progress_interval`` s."""
        with self._lock, self._errors(self.uri, f"record progress of {source_uid}"):
            state = self._state(source_uid)
            state.done.update(int(i) for i in indices)
            if time.monotonic() - state.last_progress >= self.progress_interval:
                self._flush(state)

    def add_tables(self, source_uid: str, tables: Mapping[int, FrameTables]) -> None:
        """Record the table rows of frames another process wrote (the owner of a shared
        version; frame index → its tables), written with the next progress."""
        with self._lock:
            state = self._state(source_uid)
            for index, rows in tables.items():
                state.tables[int(index)] = rows.at(index)
            state.tables_changed = True

    def _write_tables(self, state: RunState, *, final: bool = False) -> None:
        """Rewrite the version's ``spots``, ``frames`` and ``texture`` tables whole from the
        rows held; while the run goes on, at most as often as `_TABLE_SHARE` allows. At close
        (``final``) the patterns of frames this sink did not write itself (a resumed version,
        attached writers) are read back for the similarity."""
        if not state.owner or not (state.tables_changed or final):
            return
        now = time.monotonic()
        if not final and now - state.tables_written < state.tables_cost / _TABLE_SHARE:
            return
        from ..spots import TABLE_NAMES, run_tables, table_metadata

        intensities = state.intensities
        missing = [i for i in state.tables if i not in intensities]
        if final and missing and state.pattern.get("intensity") is not None:
            stored = np.asarray(state.pattern["intensity"].client.read(), np.float32)
            intensities = {**{i: stored[i] for i in range(stored.shape[0])}, **intensities}
        tables = run_tables(state.tables, intensities)
        children = set(state.node)
        for name in TABLE_NAMES:
            df = tables[name]
            if name in children:
                state.node[name].write(df)
                continue
            from tiled.client.utils import ClientError

            try:
                state.node.write_table(df, key=name, metadata=table_metadata(name))
            except ClientError as exc:
                if not conflict(exc):
                    raise
                state.node[name].write(df)
        state.tables_changed = False
        state.tables_written = time.monotonic()
        state.tables_cost = state.tables_written - now

    def _flush(self, state: RunState) -> None:
        """Write queued pattern rows (one request per array per run of consecutive frames),
        then the progress metadata. Rows leave the queue only once written."""
        order = sorted(state.pending)
        groups: list[list[int]] = []
        for i in order:
            if groups and i == groups[-1][-1] + 1:
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            for k, key in enumerate(("intensity", "sigma")):
                rows = np.stack([state.pending[i][k] for i in group])
                self._put(state.pattern[key], group[0], rows,
                          np.nan if state.owner else None)
            for i in group:
                del state.pending[i]
            state.done.update(group)
        state.last_progress = time.monotonic()
        self._write_tables(state)
        if state.owner:
            merge_metadata(state.node, self._progress(state), drop_revision=True)

    @staticmethod
    def _progress(state: RunState) -> dict[str, Any]:
        return {**state.extra, "frames_done": sorted(state.done),
                "n_frames_done": len(state.done), "updated": time.time()}

    def _fill(self, state: RunState, indices: list[int]) -> None:
        """Write rows ``indices`` as "not computed": mask code 3, NaN pattern rows."""
        groups: list[list[int]] = []
        for i in sorted(indices):
            if groups and i == groups[-1][-1] + 1 and len(groups[-1]) < _FILL_ROWS:
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            if state.mask is not None:
                shape = state.mask.client.shape[1:]
                self._put(state.mask, group[0],
                          np.full((len(group), *shape), MaskCode.NOT_COMPUTED, np.uint8),
                          MaskCode.NOT_COMPUTED)
            for arrays in state.pattern.values():
                self._put(arrays, group[0],
                          np.full((len(group), arrays.client.shape[1]), np.nan, np.float32),
                          np.nan)
            state.filled.update(group)

    def _finish_rows(self, state: RunState) -> None:
        """At close: rows for every frame the source has (``n_frames``), every row without a
        result marked "not computed"."""
        if state.mask is None:
            load_arrays(state)
        n = int(state.extra.get("n_frames") or 0)
        if state.mask is None:
            if n == 0 or state.frame_shape is None:
                return
            self._ensure_arrays(state, 0, state.frame_shape, None)
            assert state.mask is not None
        n = max(n, state.mask.length)
        missing = [i for i in range(n) if i not in state.done and i not in state.filled]
        self._fill(state, missing)

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """Flush, mark the rows without a result "not computed" (up to the source's frames),
        then write the final ``status``, ``errors`` (index → message; replaces the errors of
        earlier sessions) and ``frames_done``. An attached sink only flushes."""
        state = self._state(source_uid)
        with self._errors(self.uri, f"finish results of run {source_uid}"):
            with self._lock:
                self._flush(state)
                if state.owner:
                    self._finish_rows(state)
                    self._write_tables(state, final=True)
            if state.owner:
                old = state.node.metadata.get("errors") or {}
                new = {str(k): str(v) for k, v in errors.items()}
                md = {**self._progress(state), "status": status,
                      "errors": {**{k: None for k in old if k not in new}, **new}}
                merge_metadata(state.node, md)
        with self._lock:
            self._runs.pop(source_uid, None)
