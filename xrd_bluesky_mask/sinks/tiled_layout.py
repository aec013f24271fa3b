"""The nodes of a result version in Tiled, as `TiledResultSink` creates and finds them.

A version (``<key>``, ``<key>_v2``, ...: `xrd_bluesky_mask.tiled.results`) is created
create-first with HTTP 409 handled, or the one with the same settings is found and resumed
(`open_version`). Its arrays hold one chunk per frame (axis 0): ``mask`` (uint8 codes, the
legend in its metadata) and the ``pattern`` dataset (float32 ``intensity`` and ``sigma``, its
``two_theta`` / ``q`` coordinates), all get-or-create so several writers may share a version
(`ensure_mask`, `ensure_pattern`); a resumed version's arrays and table rows are read back
(`load_arrays`, `load_tables`). `RunState` is what the sink keeps about each open version.

A server killed while it creates an array can leave the array's storage on its disk with no
node for it (tiled writes the zarr store, then commits the node); every later attempt to create
that array answers HTTP 500. `preallocate` and the coordinates raise `StorageBlocked` for it,
and the sink moves the run to a new version (`open_version(..., fresh=True)`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocols import MaskCode
from ..provenance import settings_id
from ..tiled.nodes import conflict, get_or_create
from ..tiled.results import SPEC, node_path, result_key, version_of

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["KEPT_ON_RESUME", "SUPERSEDED", "Arrays", "RunState", "StorageBlocked", "ensure_mask",
           "ensure_pattern", "load_arrays", "load_tables", "merge_metadata", "open_version",
           "supersede"]

log = logging.getLogger(__name__)

#: Metadata a resumed version keeps from its earlier session (not overwritten by `open_run`).
KEPT_ON_RESUME = ("frames_done", "n_frames_done", "errors", "created", "result_version")
#: Status of a version given up for a newer one (`StorageBlocked`); never resumed.
SUPERSEDED = "superseded"


class StorageBlocked(RuntimeError):
    """The server cannot create the array at ``path`` (HTTP 500 while no node is there): its
    storage already holds data no node owns, left by a creation the server did not finish
    (killed mid-request). Only someone on the server can remove it, so the sink writes the run
    into a new version instead."""

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(
            f"the Tiled server cannot create {path}: its storage holds data left by a creation "
            f"it did not finish (the server was stopped mid-request?); HTTP 500: "
            f"{str(cause).splitlines()[0][:200]}")
        self.path = path


@contextmanager
def _creating(parent: Any, key: str) -> Iterator[None]:
    """Around a request that creates ``parent[key]``: a server error (HTTP 500) while no node
    ``key`` exists is raised as `StorageBlocked`; any other error as it is."""
    import httpx

    try:
        yield
    except httpx.HTTPStatusError as exc:
        status = getattr(exc.response, "status_code", None)
        if status != 500 or key in parent:
            raise
        path = "/".join([*(getattr(parent, "path_parts", None) or []), key])
        raise StorageBlocked(path, exc) from exc


@dataclass
class Arrays:
    """An array node of the version and its rows (frames) so far."""

    client: Any
    length: int


@dataclass
class RunState:
    """What the sink knows about one open version: its node and arrays, the frames done,
    the pattern rows and table rows it holds until the next flush."""

    node: Any
    expected: int | None
    version: int = 1
    owner: bool = True  # writes metadata (False: attached, arrays only)
    done: set[int] = field(default_factory=set)
    mask: Arrays | None = None
    pattern: dict[str, Arrays] = field(default_factory=dict)
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
    coords_written: bool = False  # the pattern's coordinates written or checked


def preallocate(parent: Any, key: str, shape: tuple[int, ...], dims: tuple[str, ...], dtype: str,
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
        with _creating(parent, key):
            return parent.new(StructureFamily.array, [source], key=key,
                              metadata=metadata or {}, specs=specs or []), True
    except ClientError as exc:
        if not conflict(exc):
            raise
        return parent[key], False


def merge_metadata(node: Any, metadata: dict[str, Any], *, drop_revision: bool = False) -> None:
    """JSON merge patch (RFC 7386): dicts merge, lists and values are replaced, None deletes.
    Sending it twice has the effect of sending it once."""
    from tiled.utils import patch_mimetypes

    node.patch_metadata(metadata_patch=metadata, content_type=patch_mimetypes.MERGE_PATCH,
                        drop_revision=drop_revision)


def open_version(root: Any, source_uid: str, metadata: dict[str, Any], where: str, *,
                 fresh: bool = False) -> tuple[Any, bool]:
    """``(node, created)``: the version of ``source_uid``'s results under ``root`` (the
    container at path ``where``) whose settings match ``metadata``'s, or a new one with the next
    version number. ``fresh``: always a new one. A `SUPERSEDED` version is never resumed."""
    from tiled.client.utils import ClientError
    from tiled.queries import Key, SpecsQuery

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
        matching = [n for n in versions if settings_id(n.metadata) == wanted
                    and n.metadata.get("status") != SUPERSEDED]
        if matching and not fresh:
            return max(matching, key=lambda n: version_of(n.metadata)), False
        numbers = [version_of(n.metadata) for n in versions]
        version = max([*numbers, version]) + 1
    raise RuntimeError(f"could not allocate a result version for {source_uid} under "
                       f"{where}: 64 keys taken")


def supersede(root: Any, where: str, state: RunState, exc: StorageBlocked) -> None:
    """Open a new version (same metadata and settings) under ``root`` (the container at path
    ``where``) for the run of ``state``, and mark its old one `SUPERSEDED`, pointing at the new
    one; ``state`` then refers to the new version, with no arrays yet."""
    old = state.node
    skipped = {*KEPT_ON_RESUME, "settings_id", "status"} - {"created"}
    metadata = {k: v for k, v in old.metadata.items() if k not in skipped}
    source_uid = str(metadata["source_uid"])
    node, _ = open_version(root, source_uid, {**metadata, "status": "running"}, where,
                           fresh=True)
    merge_metadata(old, {"status": SUPERSEDED, "superseded_by": node_path(node),
                         "errors": {"storage": str(exc)}})
    log.warning("xrd-mask: %s. The results of run %s go to version %d at %s instead; %s is "
                "marked %r (whoever runs the server may delete it and its storage).",
                exc, source_uid, version_of(node.metadata), node_path(node), node_path(old),
                SUPERSEDED)
    state.node, state.version = node, version_of(node.metadata)
    state.mask, state.pattern, state.filled = None, {}, set()


def load_arrays(state: RunState) -> None:
    """The arrays a version already has (resumed, attached, or made by another writer)."""
    children = set(state.node)
    if "mask" in children:
        mask = state.node["mask"]
        state.mask = Arrays(mask, mask.shape[0])
    if "pattern" in children:
        pat = state.node["pattern"]
        for key in set(pat) & {"intensity", "sigma"}:
            state.pattern[key] = Arrays(pat[key], pat[key].shape[0])


def load_tables(state: RunState) -> None:
    """The table rows of a resumed version, keyed by frame (frames written again in this
    session replace theirs).

    A writer killed between creating a table and writing its rows (tiled's ``write_table`` is
    two requests) leaves a table the server cannot read (HTTP 500). Its rows are unknown, so
    the version's frames are all taken as not done (``state.done`` emptied): they are done
    again and the tables rewritten whole."""
    import httpx

    from ..spots import tables_by_frame

    children = set(state.node)
    stored = {}
    for name in ("spots", "frames", "texture"):
        if name not in children:
            continue
        try:
            stored[name] = state.node[name].read()
        except httpx.HTTPStatusError as exc:
            if getattr(exc.response, "status_code", None) != 500:
                raise
            log.warning("xrd-mask: the %s table of %s cannot be read (HTTP 500: a writer was "
                        "stopped between creating it and writing its rows?); its %d frames "
                        "done are done again and the tables rewritten", name,
                        node_path(state.node), len(state.done))
            state.done.clear()
            return
    if "frames" in stored:
        state.tables.update(tables_by_frame(stored))


def ensure_mask(state: RunState, index: int, shape: tuple[int, ...]) -> bool:
    """Create the mask array if missing (True when this call created it): the owner's with the
    rows up to ``index``, an attached writer's preallocated to the frames expected."""
    rows, cols = shape
    n = max(state.expected or 0, index + 1) if not state.owner else index + 1
    if state.mask is None:
        mask, created = preallocate(
            state.node, "mask", (n, rows, cols), ("frame", "y", "x"), "uint8",
            metadata={"mask_codes": {str(k): v for k, v in MaskCode.result_codes().items()},
                      "attrs": {"flag_values": sorted(MaskCode.result_codes()),
                                "flag_meanings": " ".join(
                                    v.replace(" ", "_")
                                    for _, v in sorted(MaskCode.result_codes().items()))}})
        state.mask = Arrays(mask, mask.shape[0])
        return created
    return False


def ensure_pattern(state: RunState, index: int, pattern: Any) -> None:
    """Create the pattern dataset's arrays and coordinates like ``pattern``'s if missing: the
    owner's with one row (NaN until written), an attached writer's preallocated. The
    coordinates are written, or checked once in a resumed version (`_write_coord`)."""
    if len(state.pattern) == 2 and state.coords_written:
        return
    resumed = len(state.pattern) == 2  # its arrays were loaded with the version
    attrs = {k: v for k, v in pattern.attrs.items()
             if k not in ("masked_pixels", "masked_fraction")}
    pat, _ = get_or_create(state.node, "pattern", create_first=True,
                           specs=["xarray_dataset"], metadata={"attrs": attrs})
    bins = int(pattern.sizes["radial"])
    n = max(state.expected or 0, index + 1) if not state.owner else 1
    for key, long_name in (("intensity", "azimuthally averaged intensity"),
                           ("sigma", "standard error of intensity")):
        if key in state.pattern:  # loaded with the version
            continue
        arr, created = preallocate(
            pat, key, (n, bins), ("frame", "radial"), "float32", specs=["xarray_data_var"],
            metadata={"attrs": {"units": "counts", "long_name": long_name}})
        state.pattern[key] = Arrays(arr, arr.shape[0])
        if state.owner and created:  # its row 0 reads NaN until written
            arr.write_block(np.full((n, bins), np.nan, np.float32), block=(0, 0))
    for name in ("two_theta", "q"):
        if name in pattern.coords:
            _write_coord(pat, name, pattern.coords[name], check=resumed)
    state.coords_written = True


def _write_coord(pat: Any, name: str, coord: Any, *, check: bool) -> None:
    """The pattern's coordinate ``name``; another writer may have created it first. With
    ``check`` (a resumed version) its stored values are read and written again when they are
    not these to 1e-9 (tiled's ``write_array`` creates the node, then sends the values: a
    writer killed in between leaves a coordinate that reads the fill value, zeros). Without,
    the other writer is creating it now with the same values, and it is left to them. A check
    that fails is logged, never the frame's failure."""
    from tiled.client.utils import ClientError

    values = np.asarray(coord.values, dtype=np.float64)
    try:
        with _creating(pat, name):
            pat.write_array(values, key=name, dims=["radial"], specs=["xarray_coord"],
                            metadata={"attrs": {"units": coord.attrs.get("units", ""),
                                                "long_name": coord.attrs.get("long_name",
                                                                             name)}})
        return
    except ClientError as exc:
        if not conflict(exc):
            raise
    if not check:
        return
    where = node_path(pat)
    try:
        stored = pat[name]
        if stored.shape == values.shape and np.allclose(stored.read(), values, rtol=1e-9,
                                                        atol=0.0):
            return
        log.warning("the pattern's %s coordinate at %s did not hold this run's values (a "
                    "write cut short?); written again", name, where)
        stored.write(values)
    except Exception as exc:  # the results are written; the coordinate is checked next time
        log.warning("the pattern's %s coordinate at %s could not be checked: %s", name, where,
                    exc)
