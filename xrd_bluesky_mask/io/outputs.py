"""Writing masks and 1D patterns (and reading ``.xy`` patterns back), atomically.

Every writer writes to a temporary file in the destination folder, which is then renamed over
the destination with `os.replace`, so a failure (or a crash) never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import FrameError, InputFileError

__all__ = ["atomic_write", "netcdf_safe_attrs", "poni_from_xy_header", "read_xy",
           "write_mask_tiff", "write_netcdf", "write_xy"]

PathLike = str | os.PathLike


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
        "pass a DataArray made by xrd_bluesky_mask.azimuthal"
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
        1D `xarray.DataArray` as returned by `xrd_bluesky_mask.azimuthal.integrate`.
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


def poni_from_xy_header(path: PathLike) -> tuple[str, float | None]:
    """PONI text and polarisation factor from the ``# == pyFAI calibration ==`` header that
    pyFAI (and Dioptas) write into ``.xy`` patterns (pixel size, PONI and distance in m,
    rotations in rad, wavelength in m).

    Raises
    ------
    InputFileError
        A header without one of those entries.
    """
    _, _, header = read_xy(path)
    text = "\n".join(header)
    num = r"([-+\d.eE]+)"
    wanted = {"pixel": rf"PixelSize: {num}", "poni": rf"PONI: {num}, {num} m",
              "dist": rf"Distance Sample to Detector: {num}",
              "rot": rf"Rotations: {num} {num} {num}", "wavelength": rf"Wavelength: {num}"}
    found = {k: re.search(v, text) for k, v in wanted.items()}
    missing = [k for k, m in found.items() if m is None]
    if missing:
        raise InputFileError(f"{path}: no pyFAI calibration header ({', '.join(missing)} "
                             "missing); give the PONI file instead")
    g = {k: m.groups() for k, m in found.items() if m is not None}
    (pixel,), (poni1, poni2), (dist,) = g["pixel"], g["poni"], g["dist"]
    (rot1, rot2, rot3), (wavelength,) = g["rot"], g["wavelength"]
    pol = re.search(rf"Polarization factor: {num}", text)
    poni = (f"PixelSize1: {pixel}\nPixelSize2: {pixel}\nDistance: {dist}\nPoni1: {poni1}\n"
            f"Poni2: {poni2}\nRot1: {rot1}\nRot2: {rot2}\nRot3: {rot3}\n"
            f"Wavelength: {wavelength}\n")
    return poni, (float(pol.group(1)) if pol else None)


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
        `xarray.DataArray` (e.g. from `xrd_bluesky_mask.azimuthal.integrate`). Its attrs and
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
