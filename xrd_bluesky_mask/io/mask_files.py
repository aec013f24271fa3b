"""Mask files other tools load: pyFAI's EDF/NPY masks and Dioptas' ``.mask``.

Both hold 1 where a pixel is excluded (a spot, or a static pixel: gaps, flag values, NaN) and 0
where it is kept, which is what pyFAI (``pyFAI-integrate --mask``, ``AzimuthalIntegrator``'s
``mask=``) and Dioptas (Mask tab, "Load") read as a mask. Every writer takes the mask in the
frame's own orientation, the rows as fabio and tifffile read the frame's file:

- ``NAME_mask.edf`` / ``NAME_mask.npy`` (pyFAI, fabio, numpy): stored as given, so they line up
  with the image that pyFAI's tools read with fabio;
- ``NAME.mask`` (Dioptas' own mask file, a TIFF): Dioptas flips every image up-down when it
  loads it and stores its masks in that orientation, so the rows are flipped on writing, as
  Dioptas' own "Save mask" would have written them; loaded beside ``NAME.tif`` in Dioptas, it
  lines up with the image.

Every file is written atomically (`outputs.atomic_write`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FrameError
from .outputs import PathLike, atomic_write

__all__ = ["MASK_FORMATS", "export_mask", "mask_paths", "write_dioptas_mask",
           "write_pyfai_mask"]

#: Export formats and the file each writes for a frame ``NAME``.
MASK_FORMATS = {"edf": "{stem}_mask.edf", "npy": "{stem}_mask.npy", "dioptas": "{stem}.mask"}


def _exclude(mask: np.ndarray) -> np.ndarray:
    """uint8 0/1 ``(rows, cols)`` from a bool mask or uint8 mask codes (non-zero = exclude)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise FrameError(f"a mask must be a 2D array (rows, cols), got shape {m.shape}")
    return np.ascontiguousarray(m != 0, dtype=np.uint8)


def write_pyfai_mask(path: PathLike, mask: np.ndarray) -> Path:
    """Write a pyFAI mask: EDF (``.edf``, fabio) or NumPy (``.npy``), uint8, 1 = excluded.

    Parameters
    ----------
    path
        Destination; its suffix picks the format.
    mask
        bool or uint8 codes ``(rows, cols)`` in the frame's own orientation, non-zero = exclude.

    Returns
    -------
    pathlib.Path
        ``path``; ``fabio.open(path).data`` (or ``np.load``) gives the mask back, and
        ``pyFAI-integrate --mask path`` and ``AzimuthalIntegrator.integrate1d(mask=...)`` use it.
    """
    data = _exclude(mask)
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, data)
    elif suffix == ".edf":
        def write(tmp: Path) -> None:
            import fabio.edfimage

            header = {"Title": "xrd_bluesky_mask mask: 1 = excluded pixel, 0 = kept"}
            fabio.edfimage.EdfImage(data=data, header=header).write(str(tmp))
    else:
        raise ConfigError(f"{path}: a pyFAI mask is written as .edf or .npy, not {suffix!r}")
    return atomic_write(path, write)


def write_dioptas_mask(path: PathLike, mask: np.ndarray) -> Path:
    """Write Dioptas' mask file (``.mask``: a TIFF of 0/1) for the frame the mask belongs to.

    Parameters
    ----------
    path
        Destination, normally ``NAME.mask`` beside ``NAME.tif`` (what Dioptas proposes).
    mask
        bool or uint8 codes ``(rows, cols)`` in the frame's own orientation (as fabio reads
        its file), non-zero = exclude. The rows are flipped up-down on writing: Dioptas' images
        and masks are flipped from their files (see the module docstring).

    Returns
    -------
    pathlib.Path
        ``path``; Dioptas' "Load mask" (``MaskModel.load_mask``) reads it.
    """
    data = np.flipud(_exclude(mask))

    def write(tmp: Path) -> None:
        import tifffile

        tifffile.imwrite(tmp, np.ascontiguousarray(data), photometric="minisblack",
                         metadata=None, compression="zlib",
                         description="Dioptas mask (rows as Dioptas shows the image): 1 = masked")

    return atomic_write(path, write)


def mask_paths(stem: PathLike, formats: Iterable[str]) -> list[Path]:
    """The files `export_mask` writes for ``stem`` (``out/NAME``) in ``formats``."""
    paths = []
    for fmt in formats:
        if fmt not in MASK_FORMATS:
            raise ConfigError(f"unknown mask export format {fmt!r}; choose from "
                              f"{', '.join(MASK_FORMATS)}")
        paths.append(Path(MASK_FORMATS[fmt].format(stem=str(stem))))
    return paths


def export_mask(stem: PathLike, mask: np.ndarray, formats: Iterable[str]) -> list[Path]:
    """Write ``mask`` (frame orientation, non-zero = exclude) in each of ``formats``
    (``"edf"``, ``"npy"``, ``"dioptas"``) as ``stem_mask.edf``, ``stem_mask.npy``,
    ``stem.mask``; returns the paths written."""
    chosen = list(formats)
    written = []
    for fmt, path in zip(chosen, mask_paths(stem, chosen), strict=True):
        write = write_dioptas_mask if fmt == "dioptas" else write_pyfai_mask
        written.append(write(path, mask))
    return written
