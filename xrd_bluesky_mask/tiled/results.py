"""Derived results in Tiled: their layout, provenance, versions, and how to find and load them.

One container per source and *result version*, under ``<root>`` (default ``derived/xrd_mask``),
spec ``XRDMask``::

    derived/xrd_mask/<key>                 version 1: container, specs ["XRDMask"], provenance
        mask                               uint8 (frame, y, x): 0 keep, 1 spot, 2 static,
                                           3 not computed; one chunk per frame
        pattern                            container, specs ["xarray_dataset"] (reads as an
                                           xarray.Dataset with any plain tiled client)
            intensity                      float32 (frame, radial), counts
            sigma                          float32 (frame, radial), counts (standard error)
            two_theta                      float64 (radial,), deg
            q                              float64 (radial,), 1/Å (when the PONI has a wavelength)
        spots                              table: one row per masked spot (frame, position px,
                                           2θ, χ deg, q 1/Å, area px, net counts, shape,
                                           probability)
        frames                             table: one row per frame (spot count, masked %,
                                           texture index, similarity to the previous frame)
        texture                            table: one row per ring of each frame (2θ deg, level
                                           counts, texture index)
    derived/xrd_mask/<key>_v2              version 2 of the same source (same layout), ...

A *source* is a Bluesky run (``<key>`` is its start uid) or a Tiled array node holding a frame
series ``(N, H, W)`` or ``(N, 1, H, W)`` (``source_uid`` is the node's path; ``<key>`` is that path
made key-safe plus a short hash, see `result_key`).

Versions (schema 2; the layout change from schema 1): results computed with different
*settings* (masker settings incl. model id and sha256, PONI, integration settings, stream and
field; see `settings_id`) are kept side by side. The first lives at ``<key>`` (where schema 1 put
the only one, so older nodes and paths keep working), later ones at ``<key>_v2``, ``<key>_v3``...
Each carries ``result_version`` (1, 2, ...) and ``settings_id`` in its metadata; all versions of a
source share ``source_uid``. Re-running with the same settings resumes that version instead of
adding one. `find_results` returns the newest version unless ``version=`` is given;
`result_versions` lists them all. A schema-1 node reads as version 1.

Arrays hold one row per frame that exists, one chunk per frame: they grow as frames are
written (a scan announcing 30 frames and aborted after 14 has 14 rows; ``n_frames`` says how many
the source has, ``frames_expected`` what the scan announced). Frames are written as they finish
and may arrive out of order; a frame's mask is written at once and its pattern rows within
about a second (batched). The metadata key ``frames_done`` (sorted frame indices) says which
frames hold both. A row without a result (failed, or not written yet) reads mask code 3 ("not
computed") and NaN pattern values, so a plain client never takes it for a spot-free result.
(Dask reprocessing preallocates the rows of a stored series; until the run is closed, rows its
tasks have not written yet read 0.)

``status`` is ``running``, ``complete``, ``complete_with_errors`` (``errors`` maps frame index →
message), ``failed`` (``errors["run"]`` says why: no geometry, masker or results store unusable),
``aborted`` (the scan stopped early: ``scan_exit_status`` and ``scan_reason`` from its stop
document) or ``interrupted`` (the writing process died before the scan ended; its journal was
replayed, ``xrd-mask reprocess`` completes it) or ``superseded`` (the server could not create
its arrays, storage left by a server killed mid-request; ``superseded_by`` is the path of the
version holding the results, ``errors["storage"]`` says what). While a run is written,
``lag_frames`` and ``lag_s`` say how far the worker is behind the scan and ``frames_pending``
how many results wait in its local journal (Tiled unreachable).

The tables (columns, units and formulas: `xrd_bluesky_mask.spots`, docs/live-and-tiled.md)
hold the frames written so far, keyed by frame (a frame written again replaces its rows); they
are rewritten whole with the progress while the run is written, and complete once ``status``
is no longer ``running``. Each table's metadata has its columns' ``units``.

Plain tiled clients read everything: ``client["derived/xrd_mask/<uid>/mask"][i]``,
``client["derived/xrd_mask/<uid>/spots"].read()`` (a pandas DataFrame),
``client["derived/xrd_mask/<uid>_v2/pattern"].read()``, or every version of a run with
``client["derived/xrd_mask"].search(Key("source_uid") == uid)`` (``search_deep`` from the root).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import numpy as np

from .nodes import server_root

__all__ = [
    "DEFAULT_ROOT",
    "FINAL_STATUSES",
    "SPEC",
    "find_results",
    "finished_sources",
    "frames_done",
    "load_masks",
    "load_patterns",
    "load_tables",
    "node_path",
    "result_key",
    "result_versions",
    "run_uid_of",
    "source_id_of",
]

#: Default path of the container that holds one derived container per source and version.
DEFAULT_ROOT = "derived/xrd_mask"
#: Spec of a derived container.
SPEC = "XRDMask"
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def result_key(source_id: str, version: int = 1) -> str:
    """Key of a source's results under the results root.

    A run uid (any key-safe id) is used as is; an array node's path becomes its key-safe form
    plus 8 hex digits of its hash (``raw/sample_a/frames`` → ``raw.sample_a.frames-1a2b3c4d``).
    Version ``n >= 2`` appends ``_v<n>``.
    """
    if _SAFE_KEY.fullmatch(source_id):
        base = source_id
    else:
        slug = re.sub(r"[^A-Za-z0-9._-]+", ".", source_id).strip("._-")[:80] or "node"
        base = f"{slug}-{hashlib.sha256(source_id.encode()).hexdigest()[:8]}"
    return base if version <= 1 else f"{base}_v{version}"


def source_id_of(source: Any) -> str:
    """The id results are filed under: a run's start uid, or an array node's path.

    Accepts a uid or path string, a start document, a BlueskyRun client or an array client.
    """
    if isinstance(source, str):
        return source
    if isinstance(source, dict) and "uid" in source:
        return str(source["uid"])
    md = getattr(source, "metadata", None)
    if md is not None:
        try:
            return str(md["start"]["uid"])
        except (TypeError, KeyError):
            pass
    family = getattr(source, "structure_family", None)
    if str(getattr(family, "value", family)) == "array" and node_path(source):
        return node_path(source)
    raise TypeError(
        f"expected a run uid or node path (str), a BlueskyRun or an array client, got "
        f"{type(source).__name__}"
    )


def node_path(node: Any) -> str:
    """Path of a tiled client node from the server root, ``"a/b/c"`` (``""`` for the root)."""
    return "/".join(p for p in (getattr(node, "path_parts", None) or []) if p)


def run_uid_of(run_or_uid: Any) -> str:
    """The start uid of a BlueskyRun client (or of a start document, or a uid string)."""
    return source_id_of(run_or_uid)


def _is_result(node: Any) -> bool:
    return SPEC in [getattr(s, "name", s) for s in node.specs]


def version_of(metadata: dict[str, Any]) -> int:
    """``result_version`` of a derived container's metadata (1 for schema-1 nodes)."""
    return int(metadata.get("result_version") or 1)


def result_versions(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT,
                    deep: bool = True) -> list[tuple[int, Any]]:
    """Every result version of a source, oldest first, as ``(version, container)``.

    Looks among the children of ``root`` first, then (nothing there, and ``deep``) over the
    whole server with ``search_deep``. An empty list when the source has no results.
    """
    from tiled.queries import Key, SpecsQuery

    sid = source_id_of(client if source is None else source)
    top = server_root(client)
    found: list[Any] = []
    try:
        parent = top[root]
    except KeyError:
        parent = None
    if parent is not None:
        found = list(parent.search(Key("source_uid") == sid).search(SpecsQuery([SPEC])).values())
    if not found and deep:
        found = [n for n in top.search_deep(Key("source_uid") == sid).values() if _is_result(n)]
    found.sort(key=lambda n: (version_of(n.metadata), n.metadata.get("created") or 0))
    return [(version_of(n.metadata), n) for n in found]


def find_results(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT,
                 version: int | None = None) -> Any:
    """The derived container of a source (its newest version by default).

    Parameters
    ----------
    client
        Any tiled client node on the server (the root, a catalog, or a BlueskyRun).
    source
        The source run's uid or BlueskyRun client, or an array node's path or client; None
        when ``client`` is the BlueskyRun.
    root
        Path of the results root from the server's root; searched first, then ``search_deep``
        over the whole server.
    version
        ``result_version`` to return (1, 2, ...); None: the newest.

    Returns
    -------
    tiled.client.container.Container
        The ``XRDMask`` container.

    Raises
    ------
    KeyError
        No results for that source, or not that version (the message says what exists).
    """
    sid = source_id_of(client if source is None else source)
    versions = result_versions(client, sid, root=root)
    if not versions:
        raise KeyError(
            f"no xrd_mask results for {sid} yet: nothing under {root} and no node with "
            "metadata source_uid == it. If the scan has just ended, the callback may still be "
            "opening them: call its wait() first (the beamline profile's xrd.results() waits "
            "for you). Otherwise XRDMaskCallback was not subscribed during the run; "
            f"`xrd-mask reprocess {sid}` makes them."
        )
    if version is None:
        return versions[-1][1]
    for number, node in versions:
        if number == version:
            return node
    raise KeyError(
        f"results of {sid} have no version {version}; versions: "
        f"{', '.join(str(n) for n, _ in versions)}"
    )


#: Result statuses after which a source is left alone (not ``running`` nor ``interrupted``).
FINAL_STATUSES = frozenset({"complete", "complete_with_errors", "aborted", "failed"})


def finished_sources(client: Any, masker: dict[str, Any], integration: dict[str, Any], *,
                     root: str = DEFAULT_ROOT) -> set[str]:
    """The ``source_uid`` of every result under ``root`` with a final status
    (`FINAL_STATUSES`) made with these masker settings (``device`` aside) and integration
    settings: one listing of the results root, for ``xrd-mask watch``'s catch-up."""
    import json

    from ..provenance import VOLATILE_MASKER_KEYS

    def recipe(m: dict[str, Any], i: dict[str, Any]) -> str:
        kept = {k: v for k, v in (m or {}).items() if k not in VOLATILE_MASKER_KEYS}
        return json.dumps({"masker": kept, "integration": i or {}}, sort_keys=True, default=str)

    try:
        results = server_root(client)[root]
    except KeyError:
        return set()
    wanted = recipe(masker, integration)
    return {str(md.get("source_uid")) for md in (node.metadata or {} for _, node in results.items())
            if md.get("status") in FINAL_STATUSES
            and recipe(md.get("masker") or {}, md.get("integration") or {}) == wanted}


def frames_done(node: Any) -> list[int]:
    """Indices of the frames whose results are written, from a derived container."""
    node.refresh()
    return sorted(int(i) for i in node.metadata.get("frames_done", []))


def load_masks(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT,
               version: int | None = None) -> np.ndarray:
    """The mask codes of every frame, uint8 ``(frames, rows, cols)``: 0 keep, 1 spot, 2 static,
    3 not computed (see ``frames_done``). ``version``: see `find_results`.
    """
    node = find_results(client, source, root=root, version=version)
    return np.asarray(node["mask"].read())


def load_tables(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT,
                version: int | None = None) -> dict[str, Any]:
    """The results' tables as pandas DataFrames: ``{"spots": ..., "frames": ...,
    "texture": ...}`` (empty dict before the first are written). ``version``: see
    `find_results`."""
    node = find_results(client, source, root=root, version=version)
    children = set(node)
    return {name: node[name].read() for name in ("spots", "frames", "texture")
            if name in children}


def _read_growing(node: Any, tries: int = 5) -> Any:
    """``node.read()``, tried again 0.1 s later while it fails: a read racing a growing array
    sees unequal sizes (ValueError); the last try's error is raised."""
    for _ in range(tries - 1):
        try:
            return node.read()
        except ValueError:
            time.sleep(0.1)
    return node.read()


def load_patterns(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT,
                  only_done: bool = True, version: int | None = None) -> Any:
    """The masked 1D patterns as an `xarray.DataArray` ``(frame, radial)``, counts.

    Coords: ``frame`` (source frame index), ``two_theta`` (deg), ``q`` (1/Å) when stored,
    ``sigma`` (frame, radial). With ``only_done`` the frames without results are left out.
    ``version``: see `find_results`.
    """
    import xarray as xr

    node = find_results(client, source, root=root, version=version)
    ds = _read_growing(node["pattern"])
    da = ds["intensity"]
    if "sigma" in ds:
        da = da.assign_coords(sigma=ds["sigma"])
    da = da.assign_coords(frame=np.arange(da.sizes["frame"]))
    if only_done:
        done = [i for i in frames_done(node) if i < da.sizes["frame"]]
        da = da.isel(frame=done)
    da.attrs = {**ds.attrs, **da.attrs}
    return xr.DataArray(da)
