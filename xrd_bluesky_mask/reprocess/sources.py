"""What to reprocess: Bluesky runs and frame-series array nodes in Tiled, and reading their frames.

A *source* is resolved from a run uid, a BlueskyRun client, a Tiled query over the runs, or an
array node (path or client) of shape ``(N, H, W)`` or ``(N, 1, H, W)``. Only metadata is read
here (shapes, start documents, stream configuration, node metadata): no frame data.

Geometry: the ``poni`` given wins; else a run's start document (``xrd_mask_poni``) or a device
configuration key ending in ``poni``; else an array node's ``metadata["geometry"]["poni"]`` (the
contract of the Tiled adapters that serve folders of detector files as one array node).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, UnknownSource
from ..geometry import poni_text_from

__all__ = ["AllOf", "SeriesFrameSource", "Source", "parse_query", "poni_text_from",
           "resolve_sources"]

RUN, NODE = "bluesky_run", "array_node"


@dataclass(frozen=True)
class Source:
    """One run or frame series to reprocess (metadata only; picklable).

    Attributes
    ----------
    source_id
        What results are filed under: the run's start uid, or the array node's path.
    kind
        ``"bluesky_run"`` or ``"array_node"``.
    path
        From the server root: the run (``"<uid>"``, ``"raw/<uid>"``) or the array node.
    stream, field
        Where a run's frames are (``""`` for an array node).
    n_frames
        Frames in the series now.
    shape
        Frame ``(rows, cols)`` in pixels.
    poni
        PONI text, or None when none was found.
    geometry_source
        Where the PONI came from.
    """

    source_id: str
    kind: str
    path: str
    stream: str
    field: str
    n_frames: int
    shape: tuple[int, int]
    poni: str | None
    geometry_source: str

    @property
    def array_path(self) -> str:
        """Path of the frames array from the server root."""
        return self.path if self.kind == NODE else f"{self.path}/{self.stream}/{self.field}"

    @property
    def label(self) -> str:
        """Short name for tables and progress bars."""
        return self.source_id[:8] if self.kind == RUN else self.source_id[-32:]


@dataclass(frozen=True)
class AllOf:
    """Several Tiled queries that must all hold (``--query A=1 --query B=2``)."""

    queries: tuple[Any, ...]


def parse_query(text: str) -> Any:
    """``KEY=VALUE`` → ``Key(KEY) == VALUE`` (VALUE read as JSON when it parses: 3, true)."""
    from tiled.queries import Key

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UnknownSource(f"query {text!r} is not KEY=VALUE (e.g. sample=LaB6, scan_id=12)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return Key(key.strip()) == value


def _is_query(obj: Any) -> bool:
    return type(obj).__module__.startswith("tiled.queries") or isinstance(obj, AllOf)


def _is_run(node: Any) -> bool:
    specs = [getattr(s, "name", s) for s in getattr(node, "specs", [])]
    md = getattr(node, "metadata", None) or {}
    return "BlueskyRun" in specs or (isinstance(md.get("start"), dict) and "uid" in md["start"])


def _is_array(node: Any) -> bool:
    family = getattr(node, "structure_family", None)
    return str(getattr(family, "value", family)) == "array"


def _search(container: Any, query: Any) -> list[Any]:
    """Nodes matching ``query`` among ``container``'s children. Keys not found as given are
    tried as start-document keys (``sample`` → ``start.sample``)."""
    queries = query.queries if isinstance(query, AllOf) else (query,)

    def run(qs: tuple[Any, ...]) -> list[Any]:
        node = container
        for q in qs:
            node = node.search(q)
        return list(node.values())

    def on_start_key(q: Any) -> Any:
        key = str(q.key) if hasattr(q, "key") else None
        if key is None or key.startswith(("start.", "stop.")) or \
                not dataclasses.is_dataclass(q) or isinstance(q, type):
            return q
        return dataclasses.replace(q, key=f"start.{key}")

    found = run(queries)
    if not found:
        prefixed = tuple(on_start_key(q) for q in queries)
        if prefixed != queries:
            found = run(prefixed)
    if not found:
        raise UnknownSource(f"the query {query!r} matched nothing in {_where(container)}. "
                            "Check the key and value (keys are start-document keys, e.g. "
                            "sample=LaB6).")
    return found


def _where(container: Any) -> str:
    from ..tiled.results import node_path

    path = node_path(container)
    return f"'{path}'" if path else "the server's root"


def _lookup(client: Any, root: Any, key: str) -> Any:
    """``client[key]``, else ``root[key]`` (a path from the server root)."""
    for base in (client, root):
        try:
            return base[key]
        except KeyError:
            continue
    hint = ("a Bluesky run's full start uid" if "/" not in key
            else "the path of an array node from the server root")
    raise UnknownSource(
        f"nothing at {key!r} in {_where(client)} (nor from the server root). Pass {hint}; "
        "list runs with `client.keys()` or search them with --query KEY=VALUE."
    )


def _from_run(run: Any, poni: str | None) -> Source:
    from ..documents import find_image_field, find_poni
    from ..tiled.results import node_path

    start = dict(run.metadata["start"])
    uid = str(start["uid"])
    streams = list(run)
    ordered = (["primary"] if "primary" in streams else []) + [s for s in streams
                                                                if s != "primary"]
    for stream in ordered:
        node = run[stream]
        md = dict(node.metadata or {})
        field = find_image_field(md.get("data_keys") or {})
        if field is None:
            continue
        arr = node[field]
        shape = tuple(int(n) for n in arr.shape)
        text, where = find_poni(start, md, poni)
        if text is None:
            raise GeometryError(
                f"no detector geometry for run {uid}: its start document has no "
                "'xrd_mask_poni' and no device configuration holds a PONI. Pass poni=... "
                "(--poni FILE)."
            )
        return Source(uid, RUN, node_path(run), stream, field, shape[0],
                      (shape[-2], shape[-1]), text, where)
    raise UnknownSource(f"run {uid} has no stream with a 2D image (streams: {streams}); "
                        "nothing to mask.")


def _from_array(arr: Any, poni: str | None) -> Source:
    from ..tiled.results import node_path

    path = node_path(arr)
    shape = tuple(int(n) for n in arr.shape)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[1] == 1)) or min(shape[-2:]) < 2:
        raise UnknownSource(f"array node {path!r} has shape {shape}; a frame series is "
                            "N x H x W or N x 1 x H x W.")
    where = "given"
    if poni is None:
        geometry = (arr.metadata or {}).get("geometry") or {}
        poni, where = geometry.get("poni"), "metadata:geometry.poni"
        if not isinstance(poni, str) or not poni.strip():
            raise GeometryError(
                f"no detector geometry for array node {path!r}: its metadata has no "
                "geometry.poni. Pass poni=... (--poni FILE)."
            )
    return Source(path, NODE, path, "", "", shape[0], (shape[-2], shape[-1]), poni, where)


def _from_node(node: Any, poni: str | None, name: str) -> Source:
    if _is_run(node):
        return _from_run(node, poni)
    if _is_array(node):
        return _from_array(node, poni)
    raise UnknownSource(f"{name} is neither a Bluesky run nor a frame-series array node "
                        f"(it is a {type(node).__name__}); pass a run uid or the path of its "
                        "N x H x W array.")


def resolve_sources(client: Any, sources: Any, *, poni: Any = None) -> list[Source]:
    """The `Source` of each item of ``sources`` (duplicates dropped, order kept).

    Items: run uids and array-node paths (looked up in ``client``, then from the server root),
    BlueskyRun or array clients, and Tiled queries (``Key("sample") == "x"``, or `AllOf`)
    searched among ``client``'s children.

    Raises
    ------
    UnknownSource
        An item names nothing, or nothing reprocessable (all such items listed together).
    GeometryError
        No PONI for a source and none given, or the PONI file does not exist.
    """
    from tiled.client import from_context

    text = poni_text_from(poni)
    given = (str(poni) if isinstance(poni, str | Path) and "\n" not in str(poni)
             else "given")  # a file path names the PONI in messages
    root = from_context(client.context)
    items = list(sources) if isinstance(sources, list | tuple | set) else [sources]
    out: dict[str, Source] = {}
    problems: list[str] = []
    for item in items:
        try:
            if isinstance(item, str):
                found = [(_lookup(client, root, item), repr(item))]
            elif _is_query(item):
                found = [(node, repr(item)) for node in _search(client, item)]
            else:
                found = [(item, type(item).__name__)]
            for node, name in found:
                src = _from_node(node, text, name)
                if src.geometry_source == "given":
                    src = dataclasses.replace(src, geometry_source=given)
                out.setdefault(src.source_id, src)
        except UnknownSource as exc:
            problems.append(str(exc))
    if problems:
        raise UnknownSource("; ".join(problems) if len(problems) == 1 else
                            f"{len(problems)} sources not found:\n  " + "\n  ".join(problems))
    if not out:
        raise UnknownSource("no sources given: pass run uids, --query KEY=VALUE or --node PATH")
    return list(out.values())


class SeriesFrameSource:
    """A `FrameSource` for resolved sources: run frames through `TiledFrameSource` (which
    reads a local HDF5 file directly when it can), array-node frames by path.

    ``run_uid`` in `read` is the `Source.source_id`.
    """

    def __init__(self, root_client: Any, sources: list[Source], *, timeout: float = 10.0) -> None:
        from ..tiled.frames import TiledFrameSource

        self.root = root_client
        self.sources = {s.source_id: s for s in sources}
        self._runs = TiledFrameSource(root_client, timeout=timeout)
        self._arrays: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add(self, source: Source) -> None:
        """Make ``source`` readable."""
        self.sources[source.source_id] = source

    def read(self, run_uid: str, stream: str, field: str, index: int) -> np.ndarray:
        """Frame ``index`` of source ``run_uid``, 2D."""
        from ..tiled.frames import as_frame

        src = self.sources[run_uid]
        if src.kind == RUN:
            return self._runs.read(src.path, src.stream, src.field, index)
        with self._lock:
            arr = self._arrays.get(run_uid)
        if arr is None:
            arr = self.root[src.path]
            with self._lock:
                self._arrays[run_uid] = arr
        if index >= arr.shape[0]:
            raise IndexError(f"frame {index} of {src.path}: the node holds {arr.shape[0]}")
        return as_frame(arr[index])

    def forget(self, run_uid: str) -> None:
        """Drop cached clients of a finished source."""
        src = self.sources.get(run_uid)
        if src is not None and src.kind == RUN:
            self._runs.forget(src.path)
        with self._lock:
            self._arrays.pop(run_uid, None)
