"""What the adapters know about detector files: probing headers, reading frames, the PONI beside.

Everything here works on local paths. Headers are read with fabio (`fabio.openheader`, which
does not read the pixels); pixels with `xrd_bluesky_mask.io.read_frame` (fabio, with tifffile
as fallback for TIFF layouts fabio cannot read), so a frame served by Tiled is byte for byte what
``xrd-mask predict`` reads from the same file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tiled.adapters.utils import IncompatibleShapeError, ShapeMismatchError

from xrd_bluesky_mask.errors import FrameError, InputFileError

__all__ = [
    "FrameInfo",
    "FrameReadError",
    "FrameShapeError",
    "NoGeometryWarning",
    "find_poni",
    "geometry_metadata",
    "json_safe",
    "probe",
    "read_pixels",
]

#: Longest header string kept as metadata (longer values are cut, with a marker).
MAX_TEXT = 2048
#: Longest header list kept as metadata (e.g. TIFF strip offsets).
MAX_ITEMS = 64
#: Bytes of a PONI file read at most (a PONI file is a few hundred bytes).
MAX_PONI_BYTES = 65536


class NoGeometryWarning(UserWarning):
    """No usable PONI file beside a frame or series: served without ``geometry`` metadata."""


class FrameReadError(InputFileError, ShapeMismatchError):
    """A registered file that cannot be read any more (moved, truncated, replaced).

    It is also a Tiled ``ShapeMismatchError`` so that the server answers HTTP 422 with this
    message, which clients report at once, instead of HTTP 500, which they retry for ~24 s.
    """


class FrameShapeError(FrameError, IncompatibleShapeError):
    """A frame whose shape differs from the rest of its series (HTTP 422 when served)."""


@dataclass(frozen=True)
class FrameInfo:
    """What the header of one detector file says.

    Attributes
    ----------
    path
        The file.
    shape
        Frame ``(rows, cols)`` in pixels.
    nframes
        Frames in the file (multi-frame EDF, GE).
    dtype
        Pixel dtype when the header says it (EDF), else None (read a frame to learn it).
    header
        The first frame's header, JSON-safe (see `json_safe`).
    format
        fabio's image class, e.g. ``"EdfImage"``, ``"CbfImage"``, ``"TifImage"``.
    """

    path: Path
    shape: tuple[int, int]
    nframes: int
    dtype: np.dtype | None
    header: dict[str, Any]
    format: str


def _unreadable(path: Path, why: str) -> InputFileError:
    return InputFileError(
        f"cannot read detector file {str(path)!r} ({why.rstrip('. ')}): it is corrupt, "
        "truncated or not an image fabio knows. Move it out of the folder (or fix it) and "
        "register again."
    )


def probe(path: str | Path, *, full: bool = False) -> FrameInfo:
    """Read the header of a detector file; its pixels too with ``full``.

    Without ``full`` only the header is read (`fabio.openheader`): shape and frame count, but
    TIFF tags and the dtype of TIFF and CBF files are missing. ``full`` opens the file
    (`fabio.open`), for the complete header and the dtype.

    Raises
    ------
    InputFileError
        The file is missing or no reader understands it.
    FrameError
        It does not hold 2D frames.
    """
    import fabio

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"detector file {str(p)!r} not found (or not a file)")
    try:
        img = fabio.open(str(p)) if full else fabio.openheader(str(p))
        try:
            shape = tuple(int(n) for n in img.shape)
            nframes = int(getattr(img, "nframes", 1) or 1)
            header = dict(img.header or {})
            fmt = type(img).__name__
            dtype = img.data.dtype if full and img.data is not None else getattr(
                img, "dtype", None)
        finally:
            if full:
                img.close()
    except Exception as exc:
        if p.suffix.lower() not in (".tif", ".tiff"):
            raise _unreadable(p, f"{type(exc).__name__}: {exc}") from exc
        shape, nframes, dtype, header, fmt = _probe_tifffile(p, exc)
    if p.suffix.lower() in (".tif", ".tiff") and (len(shape) != 2 or min(shape) < 1):
        # fabio's header-only TIFF reader reports (0, 0) for some detectors' files (Pilatus):
        # the TIFF tags hold the shape
        shape, nframes, dtype, header, fmt = _probe_tifffile(
            p, ValueError(f"fabio read a shape of {shape} from the header"))
    if len(shape) != 2 or min(shape) < 1:
        raise FrameError(f"{str(p)!r} holds data of shape {shape}, not 2D detector frames")
    return FrameInfo(p, (shape[0], shape[1]), nframes,
                     np.dtype(dtype) if dtype is not None else None, json_safe(header), fmt)


def _probe_tifffile(p: Path, fabio_exc: Exception) -> tuple:
    """TIFF layouts fabio cannot open (e.g. tifffile's multi-page stacks)."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tf:
            series = tf.series[0]
            shape = tuple(int(n) for n in series.shape)
            tags = {tag.name: tag.value for tag in tf.pages.first.tags.values()}
            dtype = series.dtype
    except Exception as exc:
        raise _unreadable(p, f"fabio: {type(fabio_exc).__name__}: {fabio_exc}; tifffile: "
                             f"{type(exc).__name__}: {exc}") from exc
    nframes = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2:], nframes, dtype, tags, "tifffile"


def read_pixels(path: str | Path, index: int | None = None) -> np.ndarray:
    """Frame ``index`` (None: the only frame) of a file, 2D, in the file's dtype.

    Raises `FrameReadError` (an `InputFileError`) when the file cannot be read.
    """
    from xrd_bluesky_mask.io import read_frame

    try:
        return read_frame(path, index=index)
    except (InputFileError, FrameError) as exc:
        raise FrameReadError(str(exc)) from exc


def json_safe(value: Any, depth: int = 0) -> Any:
    """A header value as JSON-safe metadata: text, numbers, lists and dicts of them.

    Bytes are decoded (UTF-8, replacing errors), NUL characters dropped, text cut at
    `MAX_TEXT` characters and lists at `MAX_ITEMS` items, NaN and infinities written as text,
    other objects (enums, dates) as ``str``.
    """
    if depth > 6:
        return str(value)[:MAX_TEXT]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.replace("\x00", "").strip()
        return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " [...]"
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value.tolist() if isinstance(value, np.ndarray) else value)
        kept = [json_safe(v, depth + 1) for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            kept.append(f"[... {len(items) - MAX_ITEMS} more]")
        return kept
    return json_safe(str(value), depth + 1)


def _looks_like_poni(text: str) -> bool:
    keys = {line.split(":", 1)[0].strip().lower() for line in text.splitlines() if ":" in line}
    return {"distance", "poni1", "poni2"} <= keys


def find_poni(directory: str | Path, stem: str, *, what: str) -> Path | None:
    """The PONI file for ``stem`` in ``directory``: ``<stem>.poni``, else the folder's only one.

    Warns (`NoGeometryWarning`) and returns None when there is none, or several and none named
    after ``stem``. ``what`` names the frame or series in the warning.
    """
    folder = Path(directory)
    named = folder / f"{stem}.poni"
    if stem and named.is_file():
        return named
    candidates = sorted(p for p in folder.glob("*.poni") if p.is_file()
                        and not p.name.startswith("."))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(p.name for p in candidates)
        why = (f"{len(candidates)} PONI files there ({names}) and none named {stem}.poni; "
               f"name the right one {stem}.poni")
    else:
        why = ("no PONI file there; put the calibration (pyFAI .poni) beside the frames, "
               f"named {stem + '.poni' if stem else 'e.g. geometry.poni'}")
    warnings.warn(f"{what} in {str(folder)!r} is served without geometry: {why}, and "
                  "register again.", NoGeometryWarning, stacklevel=3)
    return None


def geometry_metadata(poni: Path | None) -> dict[str, str] | None:
    """``{"poni": <PONI text>, "poni_file": <file name>}``, or None (with a warning) when the
    file is unreadable or does not look like a PONI file."""
    if poni is None:
        return None
    try:
        with open(poni, "rb") as fh:
            text = fh.read(MAX_PONI_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        warnings.warn(f"cannot read the PONI file {str(poni)!r} ({exc}); serving without "
                      "geometry.", NoGeometryWarning, stacklevel=2)
        return None
    if not _looks_like_poni(text):
        warnings.warn(f"{str(poni)!r} does not look like a pyFAI PONI file (no Distance, "
                      "Poni1 and Poni2 lines); serving without geometry.", NoGeometryWarning,
                      stacklevel=2)
        return None
    return {"poni": text, "poni_file": poni.name}
