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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocols import MaskCode
from ..provenance import settings_id
from ..tiled.nodes import conflict, container_at, get_or_create
from ..tiled.results import DEFAULT_ROOT, SPEC, node_path, result_key, version_of

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["TiledResultSink"]

log = logging.getLogger(__name__)

#: Metadata a resumed version keeps from its earlier session (not overwritten by `open_run`).
_KEPT_ON_RESUME = ("frames_done", "n_frames_done", "errors", "created", "result_version")
#: Rows filled per request when marking frames without a result.
_FILL_ROWS = 8
#: Table writes take at most this share of the time between them.
_TABLE_SHARE = 0.1


@dataclass
class _Arrays:
    client: Any
    length: int


@dataclass
class _RunState:
    node: Any
    expected: int | None
    version: int = 1
    owner: bool = True  # writes metadata (False: attached, arrays only)
    done: set[int] = field(default_factory=set)
    mask: _Arrays | None = None
    pattern: dict[str, _Arrays] = field(default_factory=dict)
    pending: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    last_progress: float = field(default_factory=time.monotonic)
    filled: set[int] = field(default_factory=set)  # rows written as "not computed"
    extra: dict[str, Any] = field(default_factory=dict)  # from annotate, with the progress
    frame_shape: tuple[int, int] | None = None
    tables: dict[int, FrameTables] = field(default_factory=dict)  # frame -> its rows
    intensities: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> stored row
    tables_changed: bool = False
    tables_cost: float = 0.0  # seconds the last table write took
    tables_written: float = 0.0  # monotonic time of the last table write


def _preallocate(parent: Any, key: str, shape: tuple[int, ...], dims: tuple[str, ...], dtype: str,
                 specs: list[str] | None = None,
                 metadata: dict | None = None) -> tuple[Any, bool]:
    """``(array, created)``: ``parent[key]``, or a new array of ``shape`` with one chunk per
    frame (axis 0) and no data written yet (another writer may have created it first)."""
    from tiled.client.utils import ClientError
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    chunks = ((1,) * shape[0], *((n,) for n in shape[1:]))
    structure = ArrayStructure(shape=shape, chunks=chunks, dims=dims,
                               data_type=BuiltinDtype.from_numpy_dtype(np.dtype(dtype)))
    source = DataSource(structure=structure, structure_family=StructureFamily.array)
    try:
        return parent.new(StructureFamily.array, [source], key=key, metadata=metadata or {},
                          specs=specs or []), True
    except ClientError as exc:
        if not conflict(exc):
            raise
        return parent[key], False


def _merge_metadata(node: Any, metadata: dict[str, Any], *, drop_revision: bool = False) -> None:
    """JSON merge patch (RFC 7386): dicts merge, lists and values are replaced, None deletes.
    Sending it twice has the effect of sending it once."""
    from tiled.utils import patch_mimetypes

    node.patch_metadata(metadata_patch=metadata, content_type=patch_mimetypes.MERGE_PATCH,
                        drop_revision=drop_revision)


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
        self._runs: dict[str, _RunState] = {}
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
            node, created = self._open_version(source_uid, metadata)
            state = _RunState(node, metadata.get("frames_expected"),
                              version=version_of(node.metadata))
            shape = metadata.get("frame_shape_px")
            state.frame_shape = (int(shape[0]), int(shape[1])) if shape else None
            if not created:  # resumed (a restarted worker, a repeated reprocess)
                state.done = {int(i) for i in node.metadata.get("frames_done", [])}
                node.update_metadata({k: v for k, v in metadata.items()
                                      if k not in _KEPT_ON_RESUME})
                self._load_arrays(state)
                self._load_tables(state)
            self._runs[source_uid] = state

    def _open_version(self, source_uid: str, metadata: dict[str, Any]) -> tuple[Any, bool]:
        """``(node, created)``: the matching version, or a new one."""
        from tiled.client.utils import ClientError
        from tiled.queries import Key, SpecsQuery

        root = self._root()
        wanted = settings_id(metadata)
        md = {**metadata, "settings_id": wanted}
        version = 1
        for _ in range(64):
            try:
                node = root.create_container(result_key(source_uid, version),
                                             metadata={**md, "result_version": version},
                                             specs=[SPEC])
                return node, True
            except ClientError as exc:
                if not conflict(exc):
                    raise
            # the key is taken: by a version of this source (same settings: resume) or not
            versions = list(root.search(Key("source_uid") == source_uid)
                            .search(SpecsQuery([SPEC])).values())
            matching = [n for n in versions if settings_id(n.metadata) == wanted]
            if matching:
                return max(matching, key=lambda n: version_of(n.metadata)), False
            numbers = [version_of(n.metadata) for n in versions]
            version = max([*numbers, version]) + 1
        raise RuntimeError(f"could not allocate a result version for {source_uid} under "
                           f"{self.root}: 64 keys taken")

    def attach(self, source_uid: str, path: str, frames_expected: int | None = None) -> None:
        """Write arrays into an existing version at ``path`` (from the server root), opened by
        another process's `open_run`; this sink then writes no metadata."""
        with self._lock, self._errors(self.uri, f"open results {path}"):
            node = self.client[path]
            state = _RunState(node, frames_expected, version=version_of(node.metadata),
                              owner=False)
            self._load_arrays(state)
            self._runs[source_uid] = state

    @staticmethod
    def _load_arrays(state: _RunState) -> None:
        children = set(state.node)
        if "mask" in children:
            mask = state.node["mask"]
            state.mask = _Arrays(mask, mask.shape[0])
        if "pattern" in children:
            pat = state.node["pattern"]
            for key in set(pat) & {"intensity", "sigma"}:
                state.pattern[key] = _Arrays(pat[key], pat[key].shape[0])

    @staticmethod
    def _load_tables(state: _RunState) -> None:
        """The table rows of a resumed version, keyed by frame (frames written again in this
        session replace theirs)."""
        from ..spots import tables_by_frame

        children = set(state.node)
        stored = {name: state.node[name].read() for name in ("spots", "frames", "texture")
                  if name in children}
        if "frames" in stored:
            state.tables.update(tables_by_frame(stored))

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

    def _state(self, source_uid: str) -> _RunState:
        state = self._runs.get(source_uid)
        if state is None:
            raise RuntimeError(f"results of {source_uid!r} used before open_run/attach")
        return state

    # -- writing ------------------------------------------------------------------------
    def _ensure_arrays(self, state: _RunState, index: int, shape: tuple[int, ...],
                       pattern: Any) -> None:
        """Create the mask (and, given a ``pattern``, the pattern) arrays if missing: the
        owner's with the rows up to ``index``, an attached writer's preallocated."""
        rows, cols = shape
        n = max(state.expected or 0, index + 1) if not state.owner else index + 1
        if state.mask is None:
            mask, created = _preallocate(
                state.node, "mask", (n, rows, cols), ("frame", "y", "x"), "uint8",
                metadata={"mask_codes": {str(k): v for k, v in MaskCode.result_codes().items()},
                          "attrs": {"flag_values": sorted(MaskCode.result_codes()),
                                    "flag_meanings": " ".join(
                                        v.replace(" ", "_")
                                        for _, v in sorted(MaskCode.result_codes().items()))}})
            state.mask = _Arrays(mask, mask.shape[0])
            if state.owner and created:  # rows before ``index`` hold no result yet
                self._fill(state, list(range(min(index, state.mask.length))))
        if len(state.pattern) == 2 or pattern is None:
            return
        attrs = {k: v for k, v in pattern.attrs.items()
                 if k not in ("masked_pixels", "masked_fraction")}
        pat, _ = get_or_create(state.node, "pattern", create_first=True,
                                specs=["xarray_dataset"], metadata={"attrs": attrs})
        bins = int(pattern.sizes["radial"])
        n = max(state.expected or 0, index + 1) if not state.owner else 1
        for key, long_name in (("intensity", "azimuthally averaged intensity"),
                               ("sigma", "standard error of intensity")):
            arr, created = _preallocate(
                pat, key, (n, bins), ("frame", "radial"), "float32", specs=["xarray_data_var"],
                metadata={"attrs": {"units": "counts", "long_name": long_name}})
            state.pattern[key] = _Arrays(arr, arr.shape[0])
            if state.owner and created:  # its row 0 reads NaN until written
                arr.write_block(np.full((n, bins), np.nan, np.float32), block=(0, 0))
        for name in ("two_theta", "q"):
            if name in pattern.coords:
                self._write_coord(pat, name, pattern.coords[name])

    @staticmethod
    def _write_coord(pat: Any, name: str, coord: Any) -> None:
        from tiled.client.utils import ClientError

        try:
            pat.write_array(np.asarray(coord.values, dtype=np.float64), key=name,
                            dims=["radial"], specs=["xarray_coord"],
                            metadata={"attrs": {"units": coord.attrs.get("units", ""),
                                                "long_name": coord.attrs.get("long_name",
                                                                             name)}})
        except ClientError as exc:
            if not conflict(exc):  # another writer wrote the same coordinate
                raise

    @staticmethod
    def _put(arrays: _Arrays, index: int, rows: np.ndarray, fill: Any = None) -> list[int]:
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

    def _write_tables(self, state: _RunState, *, final: bool = False) -> None:
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

    def _flush(self, state: _RunState) -> None:
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
            _merge_metadata(state.node, self._progress(state), drop_revision=True)

    @staticmethod
    def _progress(state: _RunState) -> dict[str, Any]:
        return {**state.extra, "frames_done": sorted(state.done),
                "n_frames_done": len(state.done), "updated": time.time()}

    def _fill(self, state: _RunState, indices: list[int]) -> None:
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

    def _finish_rows(self, state: _RunState) -> None:
        """At close: rows for every frame the source has (``n_frames``), every row without a
        result marked "not computed"."""
        if state.mask is None:
            self._load_arrays(state)
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
                _merge_metadata(state.node, md)
        with self._lock:
            self._runs.pop(source_uid, None)
