"""Derived results in Tiled: their layout, provenance, and how to find and load them.

One container per source run, at ``<root>/<source_uid>`` (default root ``derived/xrd_mask``),
spec ``XRDMask``::

    derived/xrd_mask/<source_uid>          container, specs ["XRDMask"], provenance metadata
        mask                               uint8 (frame, y, x): 0 keep, 1 spot, 2 static;
                                           one chunk per frame
        pattern                            container, specs ["xarray_dataset"] (reads as an
                                           xarray.Dataset with any plain tiled client)
            intensity                      float32 (frame, radial), counts
            sigma                          float32 (frame, radial), counts (standard error)
            two_theta                      float64 (radial,), deg
            q                              float64 (radial,), 1/Å (when the PONI has a wavelength)

Arrays are preallocated to ``frames_expected`` (the start document's ``num_points``) with one
chunk per frame, and grow past it if needed. Frames are written as they finish and may arrive
out of order; a frame's mask is written at once and its pattern rows within about a second
(batched). The metadata key ``frames_done`` (sorted frame indices) says which frames hold
both; frames not done read as 0. ``status`` is ``running``, ``complete``,
``complete_with_errors`` (``errors`` maps frame index → message) or ``failed`` (``errors["run"]``
says why: no geometry, masker or results store unusable).

Plain tiled clients read everything: ``client["derived/xrd_mask/<uid>/mask"][i]``,
``client["derived/xrd_mask/<uid>/pattern"].read()``, or search with
``client.search_deep(Key("source_uid") == uid)``.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ROOT",
    "MASK_CODES",
    "SCHEMA_VERSION",
    "SPEC",
    "find_results",
    "frames_done",
    "load_masks",
    "load_patterns",
    "mask_codes",
    "package_versions",
    "provenance",
    "run_uid_of",
]

#: Default path of the container that holds one derived container per source run.
DEFAULT_ROOT = "derived/xrd_mask"
#: Spec of a derived container.
SPEC = "XRDMask"
SCHEMA_VERSION = 1
#: Values of the ``mask`` array.
MASK_CODES = {0: "keep", 1: "spot", 2: "static"}

_PACKAGES = ("tiled", "bluesky", "bluesky-tiled-plugins", "event-model", "pyFAI", "numpy")


def mask_codes(spots: np.ndarray, static: np.ndarray) -> np.ndarray:
    """uint8 mask codes: 0 keep, 1 spot, 2 static (static wins where both are set)."""
    codes = np.zeros(np.shape(spots), dtype=np.uint8)
    codes[np.asarray(spots, dtype=bool)] = 1
    codes[np.asarray(static, dtype=bool)] = 2
    return codes


def package_versions() -> dict[str, str]:
    """Versions of this package and of the libraries results depend on (torch if loaded)."""
    from .. import __version__

    versions = {"xrd_bluesky_mask": __version__}
    names = list(_PACKAGES) + (["torch"] if "torch" in sys.modules else [])
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(
    source_uid: str,
    *,
    stream: str,
    field: str,
    masker_settings: dict[str, Any],
    poni: str,
    integration: dict[str, Any],
    frames_expected: int | None = None,
    frame_shape: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Metadata of a derived container (JSON-able).

    Keys: ``schema_version``, ``source_uid``, ``stream``, ``field``, ``masker`` (its
    ``settings()``), ``model_id`` and ``model_sha256`` (None for model-free maskers), ``poni``
    (PONI text), ``integration`` (`IntegrationSettings` as a dict), ``versions``,
    ``frames_expected``, ``frame_shape_px``, ``mask_codes``, ``frames_done``,
    ``n_frames_done``, ``status``, ``errors``, ``created`` and ``updated`` (Unix seconds).
    """
    now = time.time()
    return {
        "schema_version": SCHEMA_VERSION,
        "source_uid": source_uid,
        "stream": stream,
        "field": field,
        "masker": masker_settings,
        "model_id": masker_settings.get("model_id"),
        "model_sha256": masker_settings.get("model_sha256"),
        "poni": poni,
        "integration": integration,
        "versions": package_versions(),
        "frames_expected": frames_expected,
        "frame_shape_px": list(frame_shape) if frame_shape else None,
        "mask_codes": {str(k): v for k, v in MASK_CODES.items()},
        "frames_done": [],
        "n_frames_done": 0,
        "status": "running",
        "errors": {},
        "created": now,
        "updated": now,
    }


def run_uid_of(run_or_uid: Any) -> str:
    """The start uid of a BlueskyRun client (or of a start document, or a uid string)."""
    if isinstance(run_or_uid, str):
        return run_or_uid
    if isinstance(run_or_uid, dict) and "uid" in run_or_uid:
        return str(run_or_uid["uid"])
    md = getattr(run_or_uid, "metadata", None)
    try:
        return str(md["start"]["uid"])
    except (TypeError, KeyError):
        raise TypeError(
            f"expected a run uid (str) or a BlueskyRun client, got {type(run_or_uid).__name__}"
        ) from None


def _root_client(client: Any) -> Any:
    """The server's root container, from any client node."""
    from tiled.client import from_context

    return from_context(client.context)


def find_results(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT) -> Any:
    """The derived container of a source run.

    Parameters
    ----------
    client
        Any tiled client node on the server (the root, a catalog, or a BlueskyRun).
    source
        The source run's uid or its BlueskyRun client; None when ``client`` is the BlueskyRun.
    root
        Path of the results root from the server's root; tried first, then ``search_deep``
        over the whole server.

    Returns
    -------
    tiled.client.container.Container
        The ``XRDMask`` container.

    Raises
    ------
    KeyError
        No results for that run (the message says where it looked).
    """
    from tiled.queries import Key

    uid = run_uid_of(client if source is None else source)
    top = _root_client(client)
    try:
        node = top[f"{root}/{uid}"]
        if node.metadata.get("source_uid") == uid:
            return node
    except KeyError:
        pass
    hits = top.search_deep(Key("source_uid") == uid, Key("schema_version") == SCHEMA_VERSION)
    for _path, node in hits.items():
        if SPEC in [getattr(s, "name", s) for s in node.specs]:
            return node
    raise KeyError(
        f"no xrd_mask results for run {uid}: not at {root}/{uid} and no node with metadata "
        "source_uid == uid. Was XRDMaskCallback subscribed during the run, or run "
        "`xrd-mask reprocess UID`?"
    )


def frames_done(node: Any) -> list[int]:
    """Indices of the frames whose results are written, from a derived container."""
    node.refresh()
    return sorted(int(i) for i in node.metadata.get("frames_done", []))


def load_masks(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT) -> np.ndarray:
    """The mask codes of every frame, uint8 ``(frames, rows, cols)``: 0 keep, 1 spot, 2 static.

    Frames not processed (see ``frames_done``) read as 0.
    """
    node = find_results(client, source, root=root)
    return np.asarray(node["mask"].read())


def load_patterns(client: Any, source: Any = None, *, root: str = DEFAULT_ROOT,
                  only_done: bool = True) -> Any:
    """The masked 1D patterns as an `xarray.DataArray` ``(frame, radial)``, counts.

    Coords: ``frame`` (source frame index), ``two_theta`` (deg), ``q`` (1/Å) when stored,
    ``sigma`` (frame, radial). With ``only_done`` the frames without results are left out.
    """
    import xarray as xr

    node = find_results(client, source, root=root)
    for attempt in range(5):  # a read racing a growing array sees unequal sizes
        try:
            ds = node["pattern"].read()
            break
        except ValueError:
            if attempt == 4:
                raise
            time.sleep(0.1)
    da = ds["intensity"]
    if "sigma" in ds:
        da = da.assign_coords(sigma=ds["sigma"])
    da = da.assign_coords(frame=np.arange(da.sizes["frame"]))
    if only_done:
        done = [i for i in frames_done(node) if i < da.sizes["frame"]]
        da = da.isel(frame=done)
    da.attrs = {**ds.attrs, **da.attrs}
    return xr.DataArray(da)
