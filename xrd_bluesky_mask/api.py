"""The one-line public entry point."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import as_geometry
from .masking import Masker, get_masker


@functools.lru_cache(maxsize=2)
def _cached_masker(name: str, model: str | None) -> Masker:
    return get_masker(name) if model is None else get_masker(name, model=model)


def _default_masker(name: str) -> Masker:
    """The masker ``name``, built once per active model (so `activate` takes effect at once)."""
    if name != "unet":
        return _cached_masker(name, None)
    from .models.registry import active_model_dir

    return _cached_masker(name, str(active_model_dir()))


def predict_mask(
    image: np.ndarray, poni: str | Path | Any, *, masker: str | Masker | None = None
) -> np.ndarray:
    """Mask single-crystal spots in one powder-diffraction frame.

    Parameters
    ----------
    image
        ``(rows, cols)`` detector frame, counts (any real dtype).
    poni
        pyFAI ``.poni`` path, PONI text, a `~xrd_bluesky_mask.geometry.Geometry` or a pyFAI
        ``AzimuthalIntegrator`` for this detector.
    masker
        None or ``"unet"`` (the active U-Net model: the packaged default unless another was
        activated), ``"classical"`` or a `Masker` instance.

    Returns
    -------
    numpy.ndarray
        bool, same shape as ``image``; True = exclude the pixel (a spot, or a static pixel:
        detector mask, flag value such as -1/-2, an unsigned frame's maximum (2^32 - 1, the
        gap pixels of a Dectris Eiger) or a dummy, NaN/inf).

    Raises
    ------
    GeometryError
        ``poni`` is missing, unparsable or does not fit the frame.
    ConfigError
        ``masker`` names no known masker (a `ValueError` too).
    TypeError
        ``masker`` is neither a name nor a `Masker`.
    ModelError
        The U-Net model cannot be loaded.
    """
    arr = np.asarray(image)
    shape = arr.shape[-2:] if arr.ndim >= 2 else arr.shape
    geometry = as_geometry(poni, tuple(shape) if len(shape) == 2 else None)
    if masker is None or isinstance(masker, str):
        m = _default_masker(masker or "unet")
    else:
        m = get_masker(masker)
    return m.predict(arr, geometry).mask
