"""Reading detector frames and writing masks and 1D patterns.

Readers accept every format fabio knows (TIFF, EDF, CBF, MAR, ...), NumPy ``.npy`` and
HDF5/NeXus (``.h5``, ``.hdf5``, ``.nxs``, ...). Every writer writes atomically: the output goes to
a temporary file in the destination folder, which is then renamed over the destination with
`os.replace`, so a failure (or a crash) never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import FrameError, InputFileError, XRDMaskError

__all__ = [
    "SUPPORTED_FORMATS",
    "read_frame",
    "write_mask_tiff",
    "write_xy",
    "read_xy",
    "write_netcdf",
    "atomic_write",
    "netcdf_safe_attrs",
]

#: Suffixes read with h5py.
HDF5_SUFFIXES = frozenset({".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".nx", ".he5"})

#: Suffixes read with fabio, then tifffile when fabio fails (fabio cannot read some TIFF layouts,
#: e.g. the multi-page stacks tifffile writes).
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})

#: Human-readable list used in error messages.
SUPPORTED_FORMATS = (
    "images fabio reads (TIFF .tif/.tiff, EDF .edf, CBF .cbf, MAR, Rayonix, ...), "
    "NumPy .npy, and HDF5/NeXus .h5/.hdf5/.nxs"
)

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# reading frames
# --------------------------------------------------------------------------------------------


def read_frame(
    path: PathLike, *, index: int | None = None, dataset: str | None = None
) -> np.ndarray:
    """Read one 2D detector frame.

    Parameters
    ----------
    path
        Image file: any fabio format (TIFF, EDF, CBF, ...), ``.npy``, or HDF5/NeXus
        (``.h5``, ``.hdf5``, ``.nxs``).
    index
        Frame number in a stack (3D array, multi-frame EDF/TIFF, HDF5 dataset with more than 2
        dimensions; for >3D the leading dimensions are counted in C order). Negative values
        count from the end. Not needed for single frames and stacks of one frame.
    dataset
        HDF5 only: path of the dataset inside the file (e.g. ``"/entry/data/data"``). By default
        the NeXus default signal, else the first dataset with ≥ 2 dimensions.

    Returns
    -------
    numpy.ndarray
        The frame ``(rows, cols)`` in the file's dtype (counts), exactly as stored (no flip).

    Raises
    ------
    InputFileError
        The file does not exist, or its reader failed (corrupt or unsupported file).
    FrameError
        The file holds a stack and no ``index`` was given, ``index`` is out of range, or the
        data is not a numeric image of ≥ 2 dimensions.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"input file {str(p)!r} not found")
    if p.is_dir():
        raise InputFileError(f"{str(p)!r} is a folder, not an image file")
    if index is not None:
        try:
            index = operator.index(index)
        except TypeError:
            raise FrameError(f"index must be an integer frame number, got {index!r}") from None
    suffix = p.suffix.lower()
    if dataset is not None and suffix not in HDF5_SUFFIXES:
        raise FrameError(
            f"dataset={dataset!r} applies to HDF5/NeXus files only, not {p.name!r}"
        )
    if suffix == ".npy":
        reader, func = "numpy (.npy)", _read_npy
    elif suffix in HDF5_SUFFIXES:
        reader, func = "h5py (HDF5/NeXus)", _read_hdf5
    elif suffix in TIFF_SUFFIXES:
        reader, func = "fabio and tifffile", _read_tiff
    else:
        reader, func = "fabio", _read_fabio
    try:
        frame = func(p, index, dataset)
    except XRDMaskError:
        raise
    except Exception as exc:
        raise InputFileError(_read_failed(p, reader, f"{type(exc).__name__}: {exc}")) from exc
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise FrameError(f"{str(p)!r} gave an array of shape {frame.shape}, not a 2D frame")
    if frame.dtype.kind not in "biuf":
        raise FrameError(f"{str(p)!r} holds {frame.dtype} data, not a numeric image")
    return frame


def _read_failed(p: Path, reader: str, why: str) -> str:
    return (
        f"could not read {str(p)!r} with {reader} ({why.rstrip('. ')}); the file is corrupt, "
        f"truncated or not an image. Supported formats: {SUPPORTED_FORMATS}."
    )


def _normalize_index(index: int, n: int, p: Path) -> int:
    if not -n <= index < n:
        raise FrameError(f"index {index} is out of range: {str(p)!r} holds {n} frame(s)")
    return index % n


def _need_index(p: Path, n: int, frame_shape: tuple[int, ...], where: str = "") -> FrameError:
    return FrameError(
        f"{str(p)!r}{where} holds a stack of {n} frames of shape {tuple(frame_shape)}; "
        f"pass index=<0..{n - 1}> to read one frame"
    )


def _select(arr: np.ndarray, index: int | None, p: Path, where: str = "") -> np.ndarray:
    """Pick a 2D frame out of an in-memory array of ≥ 2 dimensions."""
    if arr.ndim < 2:
        raise FrameError(f"{str(p)!r}{where} holds an array of shape {arr.shape}, not an image")
    if arr.ndim == 2:
        if index is not None:
            _normalize_index(index, 1, p)
        return arr
    frames = arr.reshape((-1, *arr.shape[-2:]))
    n = frames.shape[0]
    if index is None:
        if n == 1:
            return frames[0]
        raise _need_index(p, n, arr.shape[-2:], where)
    return frames[_normalize_index(index, n, p)]


def _read_npy(p: Path, index: int | None, dataset: str | None) -> np.ndarray:
    arr = np.load(p, mmap_mode="r", allow_pickle=False)
    return np.array(_select(arr, index, p))


def _read_fabio(p: Path, index: int | None, dataset: str | None) -> np.ndarray:
    import fabio

    img = fabio.open(str(p))
    try:
        n = int(getattr(img, "nframes", 1) or 1)
        if n > 1:
            if index is None:
                raise _need_index(p, n, np.shape(img.data))
            i = _normalize_index(index, n, p)
            data = img.data if i == getattr(img, "currentframe", 0) else img.getframe(i).data
            return np.array(data)
        if img.data is None:
            raise ValueError("fabio returned no pixel data")
        return np.array(_select(np.asarray(img.data), index, p))
    finally:
        close = getattr(img, "close", None)
        if close is not None:
            close()


def _read_tiff(p: Path, index: int | None, dataset: str | None) -> np.ndarray:
    import tifffile

    try:
        return _read_fabio(p, index, dataset)
    except XRDMaskError:
        raise
    except Exception as fabio_exc:
        try:
            with tifffile.TiffFile(p) as tf:
                arr = tf.series[0].asarray()
        except Exception as exc:
            why = (
                f"fabio: {type(fabio_exc).__name__}: {str(fabio_exc).rstrip('. ')}; "
                f"tifffile: {type(exc).__name__}: {exc}"
            )
            raise InputFileError(_read_failed(p, "fabio and tifffile", why)) from exc
        return np.array(_select(arr, index, p))


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _decode(value.item())
    return str(value)


def _nexus_default(f: Any) -> str | None:
    """Path of the NeXus default plottable signal (``@default`` chain), if any."""
    import h5py

    try:
        group = f
        for _ in range(4):  # root -> NXentry -> NXdata (-> nested default)
            default = group.attrs.get("default")
            if default is None:
                break
            nxt = group.get(_decode(default))
            if not isinstance(nxt, h5py.Group):
                break
            group = nxt
        signal = group.attrs.get("signal")
        if signal is None:
            return None
        ds = group.get(_decode(signal))
        if isinstance(ds, h5py.Dataset) and ds.ndim >= 2:
            return ds.name
    except (KeyError, OSError, ValueError, TypeError):
        return None
    return None


def _first_image_dataset(f: Any) -> str | None:
    import h5py

    found: list[str] = []

    def visit(name: str, obj: Any) -> bool | None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "biuf":
            found.append(name)
            return True  # stops the walk
        return None

    f.visititems(visit)
    return "/" + found[0] if found else None


def _read_hdf5(p: Path, index: int | None, dataset: str | None) -> np.ndarray:
    import h5py

    try:  # compression filters used by Eiger/Pilatus4 files (bitshuffle, LZ4), if installed
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass

    with h5py.File(p, "r") as f:
        if dataset is None:
            name = _nexus_default(f) or _first_image_dataset(f)
            if name is None:
                raise FrameError(
                    f"{str(p)!r} holds no numeric dataset with 2 or more dimensions"
                )
        else:
            name = dataset
            if name not in f:
                raise InputFileError(
                    f"{str(p)!r} has no dataset {dataset!r}; its image datasets are: "
                    f"{_image_datasets(f) or 'none'}"
                )
        ds = f[name]
        where = f" (dataset {ds.name!r})"
        if not isinstance(ds, h5py.Dataset):
            raise FrameError(f"{str(p)!r}: {name!r} is a group, not a dataset; pass dataset=")
        if ds.ndim < 2 or ds.dtype.kind not in "biuf":
            raise FrameError(
                f"{str(p)!r}{where} has shape {ds.shape} and dtype {ds.dtype}, not a numeric image"
            )
        if ds.ndim == 2:
            if index is not None:
                _normalize_index(index, 1, p)
            return ds[()]
        lead = ds.shape[:-2]
        n = math.prod(lead)
        if index is None:
            if n != 1:
                raise _need_index(p, n, ds.shape[-2:], where)
            i = 0
        else:
            i = _normalize_index(index, n, p)
        return ds[tuple(int(k) for k in np.unravel_index(i, lead))]


def _image_datasets(f: Any) -> list[str]:
    import h5py

    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2:
            names.append("/" + name)

    f.visititems(visit)
    return names[:20]


# --------------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------------


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    Parameters
    ----------
    path
        Destination file; its folder is created if missing.
    write
        Callable that writes the complete file to the path it is given.

    Returns
    -------
    pathlib.Path
        ``path``. On any exception the temporary file is removed and the exception re-raised,
        and an existing ``path`` is left untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        mode = (dest.stat().st_mode & 0o777) if dest.exists() else (0o666 & ~_umask())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------


def write_mask_tiff(path: PathLike, mask: np.ndarray) -> Path:
    """Write a mask as an uncompressed uint8 TIFF (non-zero = excluded pixel, 0 = kept).

    Parameters
    ----------
    path
        Destination ``.tif`` file.
    mask
        2D array ``(rows, cols)``: bool (written as 0/1) or uint8 codes kept as they are
        (e.g. 1 = spot, 2 = static, as `xrd-mask predict` writes).

    Returns
    -------
    pathlib.Path
        ``path``. The file reads back with fabio, tifffile, pyFAI and Dioptas.
    """
    import tifffile

    m = np.asarray(mask)
    if m.ndim != 2:
        raise FrameError(f"a mask must be a 2D array (rows, cols), got shape {m.shape}")
    if m.dtype == np.uint8:
        data = np.ascontiguousarray(m)
    else:
        data = np.ascontiguousarray(m != 0, dtype=np.uint8)

    def write(tmp: Path) -> None:
        tifffile.imwrite(
            tmp, data, photometric="minisblack", metadata=None,
            description="xrd_bluesky_mask mask: non-zero = excluded pixel, 0 = kept",
        )

    return atomic_write(path, write)


def _radial_coord(pattern: xr.DataArray) -> tuple[str, np.ndarray]:
    """The coordinate of the binning unit: (column label, values)."""
    unit = pattern.attrs.get("radial_unit")
    dim = pattern.dims[0]
    for coord in pattern.coords.values():
        if coord.dims == (dim,) and unit is not None and coord.attrs.get("pyfai_unit") == unit:
            return str(unit), np.asarray(coord.values, dtype=np.float64)
    for name, label in (("two_theta", "2th_deg"), ("q", "q_A^-1")):
        if name in pattern.coords and pattern.coords[name].dims == (dim,):
            return str(pattern.coords[name].attrs.get("pyfai_unit", label)), np.asarray(
                pattern.coords[name].values, dtype=np.float64
            )
    if dim in pattern.coords:
        return str(dim), np.asarray(pattern.coords[dim].values, dtype=np.float64)
    raise ValueError(
        "the pattern has no radial coordinate ('two_theta' or 'q'); "
        "pass a DataArray made by xrd_bluesky_mask.integration"
    )


def _header_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(_header_value(v) for v in value)
    if isinstance(value, np.ndarray):
        return ", ".join(_header_value(v) for v in value.tolist())
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)


def _header_lines(key: str, value: Any) -> list[str]:
    text = _header_value(value)
    lines = text.splitlines()
    if len(lines) <= 1:
        return [f"# {key}: {text}"]
    return [f"# {key}:"] + [f"#     {line}" for line in lines]


def write_xy(path: PathLike, pattern: xr.DataArray, header: dict | None = None) -> Path:
    """Write a 1D pattern as a text ``.xy`` file (pyFAI/Dioptas/GSAS-II readable).

    Parameters
    ----------
    path
        Destination file.
    pattern
        1D `xarray.DataArray` as returned by `xrd_bluesky_mask.integration.integrate`.
    header
        Extra provenance written as ``# key: value`` lines after the pattern's attrs.

    Returns
    -------
    pathlib.Path
        ``path``. The file has ``#`` header lines (attrs, multi-line values such as the PONI
        indented), a ``# <unit> I sigma`` column line, then three columns: the radial value
        in the binning unit (2θ in degrees or q in 1/Å), intensity and sigma (``nan`` where
        undefined).
    """
    if not isinstance(pattern, xr.DataArray) or pattern.ndim != 1:
        raise ValueError(f"write_xy needs a 1D xarray.DataArray, got {type(pattern).__name__}")
    label, x = _radial_coord(pattern)
    y = np.asarray(pattern.values, dtype=np.float64)
    if "sigma" in pattern.coords and pattern.coords["sigma"].dims == pattern.dims:
        s = np.asarray(pattern.coords["sigma"].values, dtype=np.float64)
    else:
        s = np.full_like(y, np.nan)
    lines = ["# xrd_bluesky_mask 1D pattern"]
    for key, value in pattern.attrs.items():
        lines += _header_lines(str(key), value)
    for key, value in (header or {}).items():
        lines += _header_lines(str(key), value)
    lines.append(f"# {label}  I  sigma")
    body = "\n".join(f"{a:.9e}  {b:.9e}  {c:.9e}" for a, b, c in zip(x, y, s, strict=True))
    text = "\n".join(lines) + "\n" + body + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)


_SPLIT = re.compile(r"[,;\s]+")


def read_xy(path: PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a text 1D pattern (written by `write_xy`, pyFAI, Dioptas, ...).

    Parameters
    ----------
    path
        Text file: ``#`` comment lines, then rows of 2 or more numbers (whitespace or comma
        separated). Non-numeric lines before the first data row are taken as header lines.

    Returns
    -------
    x : numpy.ndarray
        First column (radial value, e.g. 2θ in degrees), float64.
    y : numpy.ndarray
        Second column (intensity), float64.
    header : list of str
        The header lines without the leading ``#`` (and one following space).

    Raises
    ------
    InputFileError
        Missing file, or no numeric data / a malformed data row.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"pattern file {str(p)!r} not found")
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputFileError(f"could not read {str(p)!r}: {exc}") from exc
    header: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            body = line[1:]
            header.append((body[1:] if body.startswith(" ") else body).rstrip())
            continue
        try:
            values = [float(tok) for tok in _SPLIT.split(line) if tok]
        except ValueError:
            values = []
        if len(values) < 2:
            if not xs:
                header.append(line)
                continue
            raise InputFileError(
                f"{str(p)!r} line {lineno}: expected 2 or more numbers, got {raw.strip()[:80]!r}"
            )
        xs.append(values[0])
        ys.append(values[1])
    if not xs:
        raise InputFileError(
            f"{str(p)!r} holds no numeric data rows (expected '#' comments, then 2+ columns)"
        )
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), header


def _netcdf_value(value: Any) -> Any:
    """One attribute value made netCDF-legal (str, int, float or a 1D numeric array)."""
    if value is None:
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    if isinstance(value, (tuple, list, np.ndarray)):
        items = np.asarray(value, dtype=object).ravel().tolist()
        numeric = all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_))
            for v in items
        )
        if numeric and items:
            as_int = all(isinstance(v, (int, np.integer)) for v in items)
            return np.asarray(items, dtype=np.int64 if as_int else np.float64)
        return ", ".join(str(_netcdf_value(v)) for v in items)
    return str(value)


def netcdf_safe_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attrs with None → ``"None"``, bools → 0/1, tuples/lists → numeric arrays or joined text,
    dicts → JSON text, other objects → ``str``."""
    return {str(k): _netcdf_value(v) for k, v in attrs.items()}


def write_netcdf(path: PathLike, pattern: xr.DataArray) -> Path:
    """Write a pattern to a netCDF file (read back with `xarray.open_dataarray`).

    Parameters
    ----------
    path
        Destination ``.nc`` file.
    pattern
        `xarray.DataArray` (e.g. from `xrd_bluesky_mask.integration.integrate`). Its attrs and
        its coordinates' attrs are converted to netCDF-legal types with `netcdf_safe_attrs`;
        the input object is not modified.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if not isinstance(pattern, xr.DataArray):
        raise ValueError(f"write_netcdf needs an xarray.DataArray, got {type(pattern).__name__}")
    da = pattern.copy(deep=True)
    da.attrs = netcdf_safe_attrs(pattern.attrs)
    for name in list(da.coords):
        da.coords[name].attrs = netcdf_safe_attrs(pattern.coords[name].attrs)
    if da.name is None:
        da.name = "intensity"

    def write(tmp: Path) -> None:
        da.to_netcdf(tmp)

    return atomic_write(path, write)
