"""Masks of a Tiled result as files other tools load (pyFAI's EDF/NPY, Dioptas' ``.mask``).

The stored mask codes (0 keep, 1 spot, 2 static) are written as 0/1 masks by
`xrd_bluesky_mask.io.mask_files`, one file per frame and format, in the orientation the
frames are stored in Tiled (the detector's own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnknownSource
from ..io.mask_files import export_mask, mask_paths
from .results import DEFAULT_ROOT, find_results, frames_done, result_key, source_id_of

__all__ = ["export_result_masks"]


def export_result_masks(
    client: Any,
    source: Any,
    out_dir: str | Path,
    *,
    frames: Iterable[int] | None = None,
    formats: Sequence[str] = ("edf",),
    root: str = DEFAULT_ROOT,
    version: int | None = None,
) -> list[Path]:
    """Write the masks of a source's result (its newest version by default) for other tools.

    Parameters
    ----------
    client
        A tiled client node on the server (see `find_results`).
    source
        The run's uid or BlueskyRun client, or a frame-series node's path or client.
    out_dir
        Folder of the files: ``<result key>_<frame:05d>_mask.edf`` / ``_mask.npy`` / ``.mask``.
    frames
        Frame indices; None: every frame whose result is written (``frames_done``).
    formats
        ``"edf"``, ``"npy"`` (pyFAI masks) and/or ``"dioptas"`` (Dioptas' ``.mask``).
    root, version
        Where the results live and which version (see `find_results`).

    Returns
    -------
    list of pathlib.Path
        The files written, frame by frame.

    Raises
    ------
    KeyError
        The source has no results (or not that version).
    UnknownSource
        A frame that the result has not computed (the message lists those it has).
    """
    node = find_results(client, source, root=root, version=version)
    done = frames_done(node)
    chosen = done if frames is None else [int(i) for i in frames]
    missing = sorted(set(chosen) - set(done))
    if missing:
        raise UnknownSource(
            f"the result of {source_id_of(source)} has no mask for frame(s) "
            f"{', '.join(map(str, missing))}; frames done: {_ranges(done) or 'none'}"
        )
    mask_paths("", formats)  # an unknown format fails before anything is read
    key = result_key(source_id_of(source), int(node.metadata.get("result_version", 1)))
    out = Path(out_dir)
    written: list[Path] = []
    for i in chosen:
        codes = np.asarray(node["mask"][i])
        written += export_mask(out / f"{key}_{i:05d}", codes, formats)
    return written


def _ranges(indices: list[int]) -> str:
    """``0-3, 7`` for ``[0, 1, 2, 3, 7]``."""
    parts: list[str] = []
    for i in indices:
        if parts and i == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts)
