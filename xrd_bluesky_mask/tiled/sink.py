"""Where the worker writes results: the `ResultSink` protocol, to Tiled or to memory.

`TiledResultSink` writes the layout described in `xrd_bluesky_mask.tiled.results`. Arrays are
preallocated with one chunk per frame when the run announces how many frames it will have
(``frames_expected``) and filled with ``write_block``; frames beyond that (or when the count is
unknown) extend the arrays with ``patch(..., extend=True)``. Frames may arrive in any order.

To spare the server (which also serves TiledWriter during the scan), a frame's mask is written
at once but its pattern rows are queued and flushed every ``progress_interval`` seconds (one
request per array for each run of consecutive frames), followed by the progress metadata
(``frames_done``, without keeping metadata revisions). A frame is listed in ``frames_done`` once
its mask and pattern are both written; `close_run` flushes and writes the final state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .results import DEFAULT_ROOT, MASK_CODES, SPEC

__all__ = ["InMemoryResultSink", "ResultSink", "TiledResultSink"]

log = logging.getLogger(__name__)


@runtime_checkable
class ResultSink(Protocol):
    """Receives the results of one source run, frame by frame."""

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Start (or resume) the results of ``source_uid`` with provenance ``metadata``."""
        ...

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any) -> None:
        """Store frame ``index``: uint8 mask codes ``(rows, cols)`` and its 1D pattern."""
        ...

    def close_run(self, source_uid: str, status: str, errors: dict[int, str]) -> None:
        """Finish the run: ``status`` and the failed frames (index → message)."""
        ...


@dataclass
class _Arrays:
    client: Any
    length: int


@dataclass
class _RunState:
    node: Any
    expected: int | None
    done: set[int] = field(default_factory=set)
    mask: _Arrays | None = None
    pattern: dict[str, _Arrays] = field(default_factory=dict)
    pending: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    last_progress: float = field(default_factory=time.monotonic)


def _preallocate(parent: Any, key: str, shape: tuple[int, ...], dims: list[str], dtype: str,
                 specs: list[str] | None = None, metadata: dict | None = None) -> Any:
    """An array of ``shape`` with one chunk per frame (axis 0), no data written yet."""
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    chunks = ((1,) * shape[0], *((n,) for n in shape[1:]))
    structure = ArrayStructure(shape=shape, chunks=chunks, dims=dims,
                               data_type=BuiltinDtype.from_numpy_dtype(np.dtype(dtype)))
    source = DataSource(structure=structure, structure_family=StructureFamily.array)
    return parent.new(StructureFamily.array, [source], key=key, metadata=metadata or {},
                      specs=specs or [])


def _get_or_create(parent: Any, key: str, *, create_first: bool = False,
                   **kwargs: Any) -> tuple[Any, bool]:
    """``(parent[key], created)``: the container, created (one level, ``kwargs`` to
    `create_container`) if missing. ``create_first`` tries the creation first (one request
    when the key is usually new)."""
    from tiled.client.utils import ClientError

    if not create_first and key in parent:
        return parent[key], False
    try:
        return parent.create_container(key, **kwargs), True
    except ClientError as exc:
        if exc.response.status_code == 409:  # exists (or created meanwhile)
            return parent[key], False
        raise


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

        from .server import tiled_errors

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
            node = self.client
            for part in [p for p in self.root.split("/") if p]:
                node, _ = _get_or_create(node, part)
            self._root_node = node
        return self._root_node

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Get or create ``<root>/<source_uid>`` and record ``metadata`` (status "running")."""
        with self._lock, self._errors(self.uri, f"create results for run {source_uid}"):
            node, created = _get_or_create(self._root(), source_uid, create_first=True,
                                           metadata=metadata, specs=[SPEC])
            state = _RunState(node, metadata.get("frames_expected"))
            if not created:  # resumed (e.g. a restarted worker): keep what is there
                state.done = {int(i) for i in node.metadata.get("frames_done", [])}
                node.update_metadata({**metadata, "frames_done": sorted(state.done),
                                      "n_frames_done": len(state.done),
                                      "created": node.metadata.get("created")})
                children = set(node)
                if "mask" in children:
                    mask = node["mask"]
                    state.mask = _Arrays(mask, mask.shape[0])
                if "pattern" in children:
                    pat = node["pattern"]
                    for key in set(pat) & {"intensity", "sigma"}:
                        state.pattern[key] = _Arrays(pat[key], pat[key].shape[0])
            self._runs[source_uid] = state

    def _new_arrays(self, state: _RunState, index: int, codes: np.ndarray, pattern: Any) -> None:
        n = max(state.expected or 0, index + 1)
        rows, cols = codes.shape
        mask = _preallocate(state.node, "mask", (n, rows, cols), ["frame", "y", "x"], "uint8",
                            metadata={"mask_codes": {str(k): v for k, v in MASK_CODES.items()},
                                      "attrs": {"flag_values": [0, 1, 2],
                                                "flag_meanings": "keep spot static"}})
        state.mask = _Arrays(mask, n)
        attrs = {k: v for k, v in pattern.attrs.items()
                 if k not in ("masked_pixels", "masked_fraction")}
        pat, _ = _get_or_create(state.node, "pattern", create_first=True,
                                specs=["xarray_dataset"], metadata={"attrs": attrs})
        bins = int(pattern.sizes["radial"])
        for key, long_name in (("intensity", "azimuthally averaged intensity"),
                               ("sigma", "standard error of intensity")):
            arr = _preallocate(pat, key, (n, bins), ["frame", "radial"], "float32",
                               specs=["xarray_data_var"],
                               metadata={"attrs": {"units": "counts", "long_name": long_name}})
            state.pattern[key] = _Arrays(arr, n)
        for name in ("two_theta", "q"):
            if name in pattern.coords:
                coord = pattern.coords[name]
                pat.write_array(np.asarray(coord.values, dtype=np.float64), key=name,
                                dims=["radial"], specs=["xarray_coord"],
                                metadata={"attrs": {"units": coord.attrs.get("units", ""),
                                                    "long_name": coord.attrs.get("long_name",
                                                                                 name)}})

    @staticmethod
    def _put(arrays: _Arrays, index: int, rows: np.ndarray) -> None:
        """Write ``rows`` (frames ``index, index+1, ...``), extending the array if needed."""
        end = index + rows.shape[0]
        if rows.shape[0] == 1 and end <= arrays.length:
            arrays.client.write_block(rows, block=(index, *([0] * (rows.ndim - 1))))
        else:
            arrays.client.patch(rows, offset=(index,), extend=end > arrays.length)
            arrays.length = max(arrays.length, end)

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any) -> None:
        """Write frame ``index``'s mask codes (uint8) now; queue its pattern (float32
        intensity and sigma) for the next flush (every ``progress_interval`` s, and at close)."""
        state = self._runs.get(source_uid)
        if state is None:
            raise RuntimeError(f"write({source_uid!r}, {index}) before open_run({source_uid!r})")
        codes = np.ascontiguousarray(mask_codes, dtype=np.uint8)
        intensity = np.asarray(pattern.values, dtype=np.float32)
        sigma = (np.asarray(pattern.coords["sigma"].values, dtype=np.float32)
                 if "sigma" in pattern.coords else np.full_like(intensity, np.nan))
        with self._lock, self._errors(self.uri, f"write frame {index} of run {source_uid}"):
            if state.mask is None:
                self._new_arrays(state, index, codes, pattern)
            assert state.mask is not None
            bins = state.pattern["intensity"].client.shape[1]
            if intensity.shape[0] != bins:
                raise ValueError(
                    f"frame {index} pattern has {intensity.shape[0]} bins, the stored patterns "
                    f"have {bins}: keep one IntegrationSettings per run."
                )
            self._put(state.mask, index, codes[None])
            state.pending[int(index)] = (intensity, sigma)
            if time.monotonic() - state.last_progress >= self.progress_interval:
                self._flush(state)

    def _flush(self, state: _RunState) -> None:
        """Write queued pattern rows (one request per array per run of consecutive frames),
        then the progress metadata."""
        pending, state.pending = state.pending, {}
        order = sorted(pending)
        groups: list[list[int]] = []
        for i in order:
            if groups and i == groups[-1][-1] + 1:
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            for k, key in enumerate(("intensity", "sigma")):
                rows = np.stack([pending[i][k] for i in group])
                self._put(state.pattern[key], group[0], rows)
        state.done.update(order)
        state.last_progress = time.monotonic()
        state.node.update_metadata(self._progress(state), drop_revision=True)

    @staticmethod
    def _progress(state: _RunState) -> dict[str, Any]:
        return {"frames_done": sorted(state.done), "n_frames_done": len(state.done),
                "updated": time.time()}

    def close_run(self, source_uid: str, status: str, errors: dict[int, str]) -> None:
        """Flush, then write the final ``status``, ``errors`` (index → message) and
        ``frames_done``."""
        with self._lock:
            state = self._runs.pop(source_uid, None)
        if state is None:
            raise RuntimeError(f"close_run({source_uid!r}) without open_run")
        with self._errors(self.uri, f"finish results of run {source_uid}"):
            if state.pending:
                self._flush(state)
            md = {**self._progress(state), "status": status,
                  "errors": {str(k): str(v) for k, v in sorted(errors.items())}}
            state.node.update_metadata(md)


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
    """

    def __init__(self) -> None:
        self.metadata: dict[str, dict[str, Any]] = {}
        self.masks: dict[str, dict[int, np.ndarray]] = {}
        self.patterns: dict[str, dict[int, Any]] = {}
        self._lock = threading.Lock()

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Record the run's metadata (status "running")."""
        with self._lock:
            self.metadata[source_uid] = {**metadata, "status": "running"}
            self.masks.setdefault(source_uid, {})
            self.patterns.setdefault(source_uid, {})

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any) -> None:
        """Keep a copy of frame ``index``'s mask codes and pattern."""
        with self._lock:
            self.masks[source_uid][int(index)] = np.array(mask_codes, dtype=np.uint8)
            self.patterns[source_uid][int(index)] = pattern

    def close_run(self, source_uid: str, status: str, errors: dict[int, str]) -> None:
        """Record the final status and errors."""
        with self._lock:
            md = self.metadata[source_uid]
            md.update(status=status, errors={str(k): v for k, v in errors.items()},
                      frames_done=sorted(self.masks[source_uid]),
                      n_frames_done=len(self.masks[source_uid]))
