"""A Dioptas mask plugin: the U-Net spot mask of the image on screen, with Dioptas' calibration.

Dioptas 0.11 finds it through the ``dioptas.plugins.masks`` entry point (pyproject.toml) and
lists it in its Mask tab beside its own plugins; ticking it masks the spots of the current
image, and every new image is masked again (a dynamic plugin). The ``dioptas`` extra installs
Dioptas: ``pip install "xrd-bluesky-mask[dioptas]"``.

What Dioptas gives the plugin and what it gives back (``MaskPluginBase.compute_mask``): the image
as Dioptas shows it (rows flipped up-down from the file, as Dioptas loads every image), the
calibration as a ``GeometryContext`` (pixel 2θ and χ, PONI parameters) and the mask the user
drew; it returns a bool mask of the image's shape, True = masked.

Dioptas calls plugins on its GUI thread, so the work is kept short: the network runs once per
image and calibration (2-5 s for a 1043 x 981 Pilatus 1M frame on 2 CPU cores, the more as
other work shares them; see the README); a new threshold only re-cuts the stored spot
probability, and drawing a mask, or going back to one of the last `CACHED_IMAGES` images,
reuses the stored result (milliseconds).
The drawn mask is therefore not given to the network (every stroke would run it again); the
gaps and flag values of the frame are found and left out of its statistics all the same. The
model loads on the first image, not when Dioptas starts, and is shared by every plugin instance
(Dioptas builds one per configuration and per batch worker).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
from dioptas.model.util.MaskPlugin import GeometryContext, MaskPluginBase

from ..geometry import Geometry, as_geometry, poni_text_of
from ..masking import get_masker
from ..protocols import MaskResult

__all__ = ["UNetSpotMaskPlugin", "geometry_from_dioptas"]

log = logging.getLogger(__name__)

#: pyFAI detector orientations tried, in order: unspecified/pyFAI's default (bottom right),
#: then Dioptas' own convention (top right), then the two others (flipped left-right).
_ORIENTATIONS = (0, 2, 1, 4)
#: Largest 2θ difference, radians, between Dioptas' pixel array and ours (corners and centre)
#: for one geometry; float32 degrees hold 2θ to about 1e-7 rad.
_TTH_TOLERANCE_RAD = 1e-6

#: Results kept per plugin (about 5 MB each for a 1 Mpx frame: the probability and two masks).
CACHED_IMAGES = 4

_LOCK = threading.Lock()


def geometry_from_dioptas(context: GeometryContext, shape: tuple[int, int]) -> Geometry:
    """This package's `Geometry` of Dioptas' current calibration, for images of ``shape``.

    The ``GeometryContext`` carries the PONI parameters but not the detector's orientation,
    which Dioptas changes when it loads a PONI (its images are flipped up-down), so the
    orientation is the one whose pixel 2θ equals Dioptas' own ``tth_array``.

    Raises
    ------
    ValueError
        No orientation reproduces Dioptas' 2θ array (a distorted detector, a spline file).
    """
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    tth = np.asarray(context.tth_array)
    rows, cols = shape
    probe = (np.array([0, 0, rows - 1, rows - 1, rows // 2]),
             np.array([0, cols - 1, 0, cols - 1, cols // 2]))
    worst = float("inf")
    for orientation in _ORIENTATIONS:
        detector = Detector(pixel1=context.pixel1, pixel2=context.pixel2, max_shape=shape,
                            orientation=orientation)
        ai = AzimuthalIntegrator(dist=context.dist, poni1=context.poni1, poni2=context.poni2,
                                 rot1=context.rot1, rot2=context.rot2, rot3=context.rot3,
                                 detector=detector, wavelength=context.wavelength)
        geometry = as_geometry(poni_text_of(ai), shape)
        ours = np.radians(geometry.tth_deg()[probe].astype(np.float64))
        error = float(np.max(np.abs(ours - tth[probe])))
        if error < _TTH_TOLERANCE_RAD:
            return geometry
        worst = min(worst, error)
    raise ValueError(
        f"Dioptas' calibration could not be reproduced (2θ off by {worst:.2g} rad at best); "
        "is a spline or distortion file loaded? The U-Net mask needs a flat-detector PONI."
    )


@functools.lru_cache(maxsize=2)
def _masker(model: str) -> Any:
    """The U-Net masker of ``model`` ("" = the active model), loaded once per process."""
    return get_masker("unet", model=model or None)


class UNetSpotMaskPlugin(MaskPluginBase):
    """Masks single-crystal spots with this package's U-Net (the active model by default)."""

    name = "U-Net spot mask (xrd-bluesky-mask)"
    description = (
        "Masks single-crystal spots and streaks on the powder rings with the U-Net of "
        "xrd-bluesky-mask, keeping textured and preferred-orientation rings. Needs the "
        "calibration; the network runs once per image (2-5 s per megapixel on 2 CPU "
        "cores; the first image also loads the model), a new threshold is applied at once."
    )
    is_dynamic = True
    needs_geometry = True

    def __init__(self) -> None:
        self.model = ""
        self.threshold = 0.0
        self.mask_static = True
        self.last_seconds = 0.0
        self._results: OrderedDict[str, MaskResult] = OrderedDict()

    # -- Dioptas' plugin interface ----------------------------------------------------------
    def compute_mask(
        self,
        img_data: np.ndarray,
        geometry: GeometryContext | None = None,
        existing_mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """bool mask of ``img_data`` (True = masked): the spots, and with ``mask_static`` the
        invalid pixels too (gaps and flag values, NaN). ``existing_mask`` (what the user drew)
        is left to Dioptas, which adds it to every plugin's mask.

        Without a calibration nothing is masked (a warning in Dioptas' log says to load one).
        Errors (a model that cannot load) are raised: Dioptas logs them and unticks the plugin.
        """
        frame = np.asarray(img_data)
        if geometry is None:
            log.warning("%s: load a calibration (PONI) first; nothing masked", self.name)
            return np.zeros(frame.shape[:2], dtype=bool)
        t0 = time.perf_counter()
        result = self.result(frame, geometry)
        spots = self.spots(result)
        self.last_seconds = time.perf_counter() - t0
        return spots | result.static if self.mask_static else spots

    def get_settings_schema(self) -> dict:
        """The settings Dioptas' dialog shows: model, spot-probability cut, static pixels."""
        return {
            "model": {
                "type": "str", "default": "", "label": "Model",
                "description": "Empty: the active model (`xrd-mask models list`). Else a "
                               "registered model id or version, 'light', or a model folder.",
            },
            "threshold": {
                "type": "float", "default": 0.0, "min": 0.0, "max": 0.999, "step": 0.01,
                "decimals": 3, "label": "Spot probability cut",
                "description": "0: the model's calibrated cut. Higher masks fewer pixels.",
            },
            "mask_static": {
                "type": "bool", "default": True, "label": "Also mask invalid pixels",
                "description": "Module gaps and flag values (-1, -2) and NaN pixels; off: "
                               "the spots only.",
            },
        }

    def update_settings(self, settings: dict) -> None:
        """Take the dialog's values (a bad cut is a `ValueError`, which Dioptas logs)."""
        self.model = str(settings.get("model", self.model)).strip()
        threshold = float(settings.get("threshold", self.threshold))
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        self.mask_static = bool(settings.get("mask_static", self.mask_static))

    def get_settings(self) -> dict:
        """The current values, by the keys of `get_settings_schema`."""
        return {"model": self.model, "threshold": self.threshold,
                "mask_static": self.mask_static}

    # -- the work ---------------------------------------------------------------------------
    def result(self, frame: np.ndarray, context: GeometryContext) -> MaskResult:
        """The masker's result for ``frame``: computed, or stored for the same image,
        calibration and model."""
        key = _fingerprint(frame, context, self.model)
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        geo = geometry_from_dioptas(context, frame.shape[:2])
        with _LOCK:  # one network pass at a time (batch workers share the masker)
            result = _masker(self.model).predict(frame, geo)
        self._results[key] = result
        while len(self._results) > CACHED_IMAGES:
            self._results.popitem(last=False)
        return result

    def spots(self, result: MaskResult) -> np.ndarray:
        """The result's spots at this plugin's threshold (the model's own when 0)."""
        if not self.threshold or result.probability is None:
            return result.spots
        return (result.probability >= self.threshold) & ~result.static


def _fingerprint(frame: np.ndarray, context: GeometryContext, model: str) -> str:
    """A digest of everything the network's answer depends on (not the threshold)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(frame).tobytes())
    h.update(repr((frame.shape, frame.dtype.str, model, context.dist, context.poni1,
                   context.poni2, context.rot1, context.rot2, context.rot3, context.pixel1,
                   context.pixel2, context.wavelength)).encode())
    h.update(np.ascontiguousarray(np.asarray(context.tth_array)[::97, ::89]).tobytes())
    return h.hexdigest()
