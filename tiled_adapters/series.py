"""`FabioSequenceAdapter`: a numbered series (or a folder) of detector images as one stack.

The files, one frame each, become one ``(frame, y, x)`` array with one chunk per file, read
lazily: a client reading frame ``i`` makes the server open file ``i`` only (Tiled's catalog
resolves just that file's URI). The first file's header and the PONI file beside the series are
the node's metadata, with this contract (``xrd_bluesky_mask.reprocess`` relies on it)::

    {"geometry": {"poni": <PONI file text>, "poni_file": <file name>},   # absent without PONI
     "detector_header": {...JSON-safe header of the first frame...},
     "source": {"format", "directory", "series", "files", "first_file", "last_file",
                "file_numbers", "missing_numbers", "frame_shape_px"}}
"""

from __future__ import annotations

import builtins
import collections
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tiled.adapters.sequence import FileSequenceAdapter
from tiled.structures.array import ArrayStructure, BuiltinDtype
from tiled.structures.core import Spec
from tiled.type_aliases import JSON
from tiled.utils import ensure_uri, path_from_uri

from xrd_bluesky_mask.errors import FrameError, InputFileError

from ._files import (
    FrameInfo,
    FrameShapeError,
    find_poni,
    geometry_metadata,
    probe,
    read_pixels,
)
from .mimetypes import MIMETYPES_BY_FILE_EXT
from .numbering import series_of

__all__ = ["FabioSequenceAdapter", "series_files", "series_name", "series_number"]

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<ext>\.[^.]+)$")
#: Names listed at most in an error message.
_SHOW = 5


def series_number(name: str) -> int | None:
    """The number before the extension of a file name (``scan_0012.tif`` → 12), or None."""
    match = _NUMBERED.match(name)
    return int(match["number"]) if match else None


def series_name(name: str) -> str:
    """The series a file name belongs to: its prefix without the number and trailing ``_-.``
    (``scan_0012.tif`` → ``scan``); the stem for an unnumbered name."""
    match = _NUMBERED.match(name)
    if match is None:
        return Path(name).stem
    return match["prefix"].rstrip("_-. ")


def _order(path: Path) -> tuple:
    number = series_number(path.name)
    return (path.suffix.lower(), series_name(path.name),
            -1 if number is None else number, path.name)


def series_files(directory: str | Path) -> list[Path]:
    """The detector images of a folder (extensions in `MIMETYPES_BY_FILE_EXT`), in series order
    (by number, not by text: ``img_9`` before ``img_10``; by the counter wherever it is in the
    name, see `tiled_adapters.numbering`); hidden files left out."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InputFileError(f"{str(folder)!r} is not a folder")
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in MIMETYPES_BY_FILE_EXT]
    one = series_of(files)
    return list(one.files) if one is not None else sorted(files, key=_order)


def _names(paths: Sequence[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:_SHOW])
    return shown + (f" and {len(paths) - _SHOW} more" if len(paths) > _SHOW else "")


def scan_series(paths: Sequence[Path]) -> list[FrameInfo]:
    """Probe every file of a series, and fail with one error naming every bad file.

    Raises
    ------
    InputFileError
        No files, or unreadable files (all of them named).
    FrameError
        Mixed frame shapes (each shape and its files named), or multi-frame files.
    """
    if not paths:
        raise InputFileError("a series needs at least one file; none given")
    name = _name_and_numbers(paths)[0]
    infos, unreadable = [], []
    for k, p in enumerate(paths):
        try:
            infos.append(probe(p, full=k == 0))
        except (InputFileError, FrameError) as exc:
            unreadable.append((p, exc))
    if unreadable:
        first = str(unreadable[0][1])
        raise InputFileError(
            f"{len(unreadable)} of {len(paths)} files of series {name!r} "
            f"in {str(paths[0].parent)!r} cannot be read: "
            f"{_names([p for p, _ in unreadable])}. First error: {first}"
        )
    by_shape: dict[tuple[int, int], list[Path]] = {}
    for info in infos:
        by_shape.setdefault(info.shape, []).append(info.path)
    if len(by_shape) > 1:
        parts = "; ".join(f"{len(ps)} of {rows} x {cols} px ({_names(ps)})"
                          for (rows, cols), ps in sorted(by_shape.items(),
                                                         key=lambda kv: -len(kv[1])))
        raise FrameError(
            f"series {name!r} in {str(paths[0].parent)!r} mixes frame "
            f"shapes: {parts}. A series is one (frame, y, x) array: move the odd files to "
            "another folder or rename them into a series of their own."
        )
    dtypes = {str(i.dtype) for i in infos if i.dtype is not None}
    if len(dtypes) > 1:
        raise FrameError(
            f"series {name!r} in {str(paths[0].parent)!r} mixes pixel "
            f"types ({', '.join(sorted(dtypes))}); a series is one array of one dtype."
        )
    multi = [info.path for info in infos if info.nframes != 1]
    if multi:
        raise FrameError(
            f"series {name!r}: {_names(multi)} hold several frames each; "
            "a series takes one frame per file. Serve multi-frame files one by one "
            "(FabioImageAdapter gives each a (frame, y, x) array)."
        )
    return infos


def _name_and_numbers(paths: Sequence[Path]) -> tuple[str, list[int | None]]:
    """The series' name and each file's counter: from the one number that varies across the
    names (`tiled_adapters.numbering`), else the number before the extension."""
    found = series_of(paths)
    if found is not None and list(found.files) == list(paths):
        return found.name, list(found.numbers)
    return series_name(paths[0].name), [series_number(p.name) for p in paths]


def series_metadata(infos: Sequence[FrameInfo], geometry: dict[str, str] | None) -> dict:
    """Metadata of a series (the contract in the module docstring)."""
    first, last = infos[0].path, infos[-1].path
    name, numbers = _name_and_numbers([i.path for i in infos])
    source: dict[str, Any] = {
        "format": infos[0].format,
        "directory": str(first.parent),
        "series": name,
        "files": len(infos),
        "first_file": first.name,
        "last_file": last.name,
        "frame_shape_px": list(infos[0].shape),
    }
    known = [n for n in numbers if n is not None]
    if len(known) == len(numbers):
        present, lo, hi = set(known), min(known), max(known)
        source["file_numbers"] = [lo, hi]
        missing = [n for n in range(lo, hi + 1) if n not in present]
        source["missing_numbers"] = missing[:1000]
    md: dict[str, Any] = {}
    if geometry:
        md["geometry"] = geometry
    md["detector_header"] = infos[0].header
    md["source"] = source
    return md


class FabioSequenceAdapter(FileSequenceAdapter):
    """Serve a series of single-frame detector files as one lazy ``(frame, y, x)`` array.

    Parameters
    ----------
    data_uris
        ``file://`` URIs of the frames, in frame order.
    structure
        Known structure (from the catalog); None: probe every file (shapes must agree).
    metadata
        Known metadata (from the catalog); None: first header and the PONI file beside.
    specs, chunks
        As in `tiled.adapters.sequence.FileSequenceAdapter`.

    Examples
    --------
    >>> FabioSequenceAdapter.from_uris("file:///data/scan42")  # a folder   # doctest: +SKIP
    >>> FabioSequenceAdapter.from_directory("/data/scan42")                 # doctest: +SKIP
    """

    def __init__(
        self,
        data_uris: Iterable[str] | None = None,
        structure: ArrayStructure | None = None,
        *,
        metadata: JSON | None = None,
        specs: list[Spec] | None = None,
        chunks: tuple[tuple[int, ...], ...] | None = None,
    ) -> None:
        data_uris = list(data_uris or [])
        if structure is None or metadata is None:
            paths = [Path(path_from_uri(u)) for u in data_uris]
            infos = scan_series(paths)
            if structure is None:
                structure = _series_structure(infos)
                chunks = structure.chunks
            if metadata is None:
                name, _ = _name_and_numbers(paths)
                poni = find_poni(paths[0].parent, name, what=f"series {name!r}")
                metadata = series_metadata(infos, geometry_metadata(poni))
        super().__init__(data_uris, structure, metadata=metadata, specs=specs, chunks=chunks)

    @classmethod
    def from_uris(cls, *data_uris: str) -> FabioSequenceAdapter:
        """The adapter of the given files, or of every detector image in one given folder."""
        if len(data_uris) == 1 and Path(path_from_uri(data_uris[0])).is_dir():
            return cls.from_directory(path_from_uri(data_uris[0]))
        return cls(data_uris=data_uris)

    @classmethod
    def from_directory(cls, directory: str | Path, pattern: str | None = None
                       ) -> FabioSequenceAdapter:
        """The adapter of the detector images in ``directory`` (see `series_files`), or of
        those matching the glob ``pattern`` (e.g. ``"scan_*.cbf"``).

        Raises `InputFileError` if there are none, or if they are of several formats and no
        ``pattern`` picks one.
        """
        files = series_files(directory)
        if pattern is not None:
            files = [p for p in files if p.match(pattern)]
        if not files:
            raise InputFileError(
                f"{str(directory)!r} holds no detector images"
                + (f" matching {pattern!r}" if pattern else "")
                + f" (extensions: {', '.join(sorted(MIMETYPES_BY_FILE_EXT))})"
            )
        kinds = collections.Counter(MIMETYPES_BY_FILE_EXT[p.suffix.lower()] for p in files)
        if len(kinds) > 1:
            counts = ", ".join(f"{n} {m}" for m, n in kinds.most_common())
            raise InputFileError(
                f"{str(directory)!r} holds detector images of several formats ({counts}); "
                "pass pattern= (e.g. '*.tif') to choose the series."
            )
        return cls(data_uris=[ensure_uri(str(p)) for p in files])

    def _read_one(self, filepath: str) -> np.ndarray:
        frame = read_pixels(filepath)
        expected = tuple(self.structure().shape[1:])
        if frame.shape != expected:
            raise FrameShapeError(
                f"{str(filepath)!r} now holds a frame of shape {frame.shape}, not the "
                f"{expected} its series was registered with; register the series again."
            )
        return frame

    def _load_from_files(
        self, slice: builtins.slice | int | Iterable[int] | None = None
    ) -> np.ndarray:
        """Frames ``slice`` (an index, a slice or indices; None: all) stacked ``(n, y, x)``."""
        n = self.structure().shape[0]
        if slice is None:
            indices: Sequence[int] = range(n)
        elif isinstance(slice, (int, np.integer)):
            indices = [range(n)[int(slice)]]
        elif isinstance(slice, builtins.slice):
            indices = range(n)[slice]
        else:
            indices = [range(n)[int(i)] for i in slice]
        frames = self._map_read([self.filepaths[i] for i in indices])
        dtype = self.structure().data_type.to_numpy_dtype()
        if not frames:
            return np.empty((0, *self.structure().shape[1:]), dtype=dtype)
        return np.stack(frames).astype(dtype, copy=False)


def _series_structure(infos: Sequence[FrameInfo]) -> ArrayStructure:
    rows, cols = infos[0].shape
    n = len(infos)
    dtype = infos[0].dtype if infos[0].dtype is not None else read_pixels(infos[0].path).dtype
    return ArrayStructure(shape=(n, rows, cols), chunks=((1,) * n, (rows,), (cols,)),
                          data_type=BuiltinDtype.from_numpy_dtype(np.dtype(dtype)),
                          dims=("frame", "y", "x"))
