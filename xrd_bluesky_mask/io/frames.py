"""Reading detector frames: every format fabio knows, NumPy ``.npy`` and HDF5/NeXus.

`read_frame` accepts TIFF, EDF, CBF, MAR, ... (fabio, with tifffile for TIFF layouts fabio
cannot read), ``.npy`` and HDF5/NeXus (``.h5``, ``.hdf5``, ``.nxs``, ...; the NeXus default
plot, a Dectris master file's ``/entry/data`` or the first image dataset, ``index`` for
stacks). `read_pixel_mask` reads the detector's own mask of bad and gap pixels that Dectris
master files (and NeXus ``NXdetector`` groups) carry as ``pixel_mask``.
"""

from __future__ import annotations

import math
import operator
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FrameError, InputFileError, XRDMaskError

__all__ = ["PIXEL_MASK_PATHS", "SUPPORTED_FORMATS", "read_frame", "read_pixel_mask"]

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

#: Where HDF5 files keep the detector's pixel mask, in the order looked at: Dectris master
#: files (Eiger, Pilatus4) and NeXus ``NXdetector`` groups. Non-zero = a gap, dead, noisy or
#: otherwise bad pixel.
PIXEL_MASK_PATHS = (
    "/entry/instrument/detector/detectorSpecific/pixel_mask",
    "/entry/instrument/detector/pixel_mask",
)

#: Where Dectris master files keep the frames (external links to the data files), looked at
#: when the file names no NeXus default: the master file's own 2D datasets (``pixel_mask``,
#: ``flatfield``) are not frames.
DECTRIS_DATA_PATHS = ("/entry/data/data", "/entry/data/data_000001")

#: Names of 2D datasets that describe the detector rather than hold a frame.
_NOT_FRAMES = frozenset({"pixel_mask", "flatfield", "countrate_correction_table"})

PathLike = str | os.PathLike


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
        _refuse_incomplete(img, p)
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


def _refuse_incomplete(img: Any, p: Path) -> None:
    """fabio pads the pixels missing from a truncated file with zeros and only logs it; such a
    frame must fail, not be masked and integrated as if it were whole."""
    if getattr(img, "incomplete_file", False) or getattr(img, "incomplete_data", False):
        raise FrameError(
            f"{str(p)!r} is truncated: its header announces more pixel data than the file "
            "holds (a transfer or write that did not finish). Copy the file again; the frame "
            "is not used."
        )


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
        if (isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "biuf"
                and name.rsplit("/", 1)[-1] not in _NOT_FRAMES):
            found.append(name)
            return True  # stops the walk
        return None

    f.visititems(visit)
    return "/" + found[0] if found else None


def _dectris_data(f: Any) -> str | None:
    """The frames of a Dectris master file (`DECTRIS_DATA_PATHS`), if the file has them."""
    import h5py

    for name in DECTRIS_DATA_PATHS:
        try:
            ds = f.get(name)
        except (KeyError, OSError):  # an external link whose data file is missing
            continue
        if isinstance(ds, h5py.Dataset) and ds.ndim >= 2:
            return name
    return None


def read_pixel_mask(path: PathLike) -> np.ndarray | None:
    """The detector's own mask of bad pixels, where an HDF5 file holds one.

    Dectris master files (Eiger, Pilatus4) write it as
    ``/entry/instrument/detector/detectorSpecific/pixel_mask``, NeXus files as the
    ``pixel_mask`` of their ``NXdetector`` (`PIXEL_MASK_PATHS`): a bit field where any non-zero
    value marks a gap, dead, noisy or otherwise bad pixel.

    Parameters
    ----------
    path
        Any image file; only HDF5/NeXus files (``.h5``, ``.hdf5``, ``.nxs``, ...) can hold one.

    Returns
    -------
    numpy.ndarray or None
        bool ``(rows, cols)``, True = exclude (the static mask's convention), in the file's
        orientation; None for other formats, files without a 2D ``pixel_mask`` and files that
        cannot be opened (`read_frame` reports those).
    """
    p = Path(path)
    if p.suffix.lower() not in HDF5_SUFFIXES or not p.is_file():
        return None
    import h5py

    try:
        with h5py.File(p, "r") as f:
            for name in PIXEL_MASK_PATHS:
                ds = f.get(name)
                if isinstance(ds, h5py.Dataset) and ds.ndim == 2 and ds.dtype.kind in "biuf":
                    return np.asarray(ds[()]) != 0
    except (OSError, KeyError, ValueError):
        return None
    return None


def _read_hdf5(p: Path, index: int | None, dataset: str | None) -> np.ndarray:
    import h5py

    try:  # compression filters used by Eiger/Pilatus4 files (bitshuffle, LZ4), if installed
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass

    with h5py.File(p, "r") as f:
        if dataset is None:
            name = _nexus_default(f) or _dectris_data(f) or _first_image_dataset(f)
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
