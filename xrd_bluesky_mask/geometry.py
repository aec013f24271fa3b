"""Detector geometry: PONI text <-> a cached pyFAI integrator and per-pixel arrays.

One `Geometry` object per (PONI, frame shape) pair lives in a small cache, so every frame of a
scan reuses the same pyFAI integrator (and its engines) and the same per-pixel arrays.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import GeometryError

if TYPE_CHECKING:
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

PoniLike = "str | Path | Geometry | AzimuthalIntegrator"


@dataclass(eq=False)
class Geometry:
    """A detector geometry ready for integration and ring statistics.

    Attributes
    ----------
    integrator
        pyFAI ``AzimuthalIntegrator``; keep one per geometry so engines are reused.
    poni_text
        The PONI file text (pyFAI format) that rebuilds this geometry.
    shape
        Frame shape ``(rows, cols)`` in pixels this geometry is used with.
    source
        Where the PONI came from (a path, or ``"<memory>"``).
    """

    integrator: AzimuthalIntegrator
    poni_text: str
    shape: tuple[int, int]
    source: str = "<memory>"
    _cache: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """Pixel size ``(pixel1, pixel2)`` in metres (rows, cols)."""
        det = _detector_of(self.integrator)
        return float(det.pixel1), float(det.pixel2)

    @property
    def distance_m(self) -> float:
        """Sample-to-PONI distance in metres."""
        return float(self.integrator.dist)

    @property
    def wavelength_m(self) -> float:
        """X-ray wavelength in metres (raises if the PONI has none)."""
        wl = self.integrator.wavelength
        if not wl:
            raise GeometryError(
                f"the PONI from {self.source} has no wavelength; q and d-spacings need one. "
                "Add a 'Wavelength: <metres>' line to the PONI file."
            )
        return float(wl)

    def tth_deg(self) -> np.ndarray:
        """Scattering angle 2θ of every pixel centre, degrees, float32 ``(rows, cols)``."""
        if "tth" not in self._cache:
            tth = self.integrator.center_array(self.shape, unit="2th_rad")
            self._cache["tth"] = np.degrees(tth).astype(np.float32)
        return self._cache["tth"]

    def chi_deg(self) -> np.ndarray:
        """Azimuth χ of every pixel centre, degrees in (-180, 180], float32 ``(rows, cols)``."""
        if "chi" not in self._cache:
            chi = self.integrator.center_array(self.shape, unit="chi_rad")
            self._cache["chi"] = np.degrees(chi).astype(np.float32)
        return self._cache["chi"]

    def tth_per_pixel_deg(self) -> float:
        """2θ step of one pixel at the beam centre, degrees (sets ring-bin widths)."""
        return math.degrees(math.atan(min(self.pixel_size_m) / self.distance_m))

    def detector_mask(self) -> np.ndarray:
        """The detector's own mask (gaps, dead modules) as bool ``(rows, cols)``, True = exclude."""
        if "detmask" not in self._cache:
            m = _detector_of(self.integrator).mask
            if m is None or tuple(np.shape(m)) != self.shape:
                m = np.zeros(self.shape, dtype=bool)
            self._cache["detmask"] = np.asarray(m, dtype=bool)
        return self._cache["detmask"]

    def check_frame(self, frame_shape: tuple[int, ...]) -> None:
        """Raise `GeometryError` unless ``frame_shape`` equals this geometry's detector shape."""
        if tuple(frame_shape) != self.shape:
            raise GeometryError(
                f"frame shape {tuple(frame_shape)} does not match the detector shape {self.shape} "
                f"of the PONI from {self.source}. {shape_mismatch_hint(frame_shape, self.shape)}"
            )


def shape_mismatch_hint(frame_shape: tuple[int, ...], detector_shape: tuple[int, ...]) -> str:
    """What usually makes a frame's shape differ from its PONI's detector, the likeliest first.

    ``frame_shape`` and ``detector_shape`` are ``(rows, cols)`` in pixels. The usual causes:
    the frame was binned (read out 2x2), cropped to a region of interest (or its detector gap
    rows left out), transposed or rotated by 90°, or the PONI names another detector (e.g.
    pyFAI's ``Eiger500k``, 514x1030 with its gaps, for a 512x1028 frame).
    """
    fr, fc = (int(n) for n in tuple(frame_shape)[-2:])
    dr, dc = (int(n) for n in tuple(detector_shape)[-2:])
    likely = ""
    if (fr, fc) == (dc, dr):
        likely = ("The frame is the detector transposed or rotated by 90°: pass --transpose "
                  "(or orientation='transpose'), or use a PONI made on frames as they are. ")
    elif fr and fc and dr % fr == 0 and dc % fc == 0 and (dr // fr, dc // fc) != (1, 1):
        likely = (f"The frame looks binned {dr // fr}x{dc // fc}: calibrate a PONI on binned "
                  "frames, or read the detector out unbinned. ")
    elif fr <= dr and fc <= dc:
        likely = (f"The frame is {dr - fr} row(s) and {dc - fc} column(s) smaller: cropped to "
                  "a region of interest, or without the detector's gap rows and columns; or "
                  "the PONI names a larger detector of the family. ")
    elif fr >= dr and fc >= dc:
        likely = (f"The frame is {fr - dr} row(s) and {fc - dc} column(s) larger: the PONI "
                  "names a smaller detector, or was made on cropped frames. ")
    return (likely + "Usual causes: binning, a crop or ROI, a transposed or rotated frame, "
            "the wrong detector in the PONI (its Detector line). Use the PONI calibrated on "
            "frames like this one (pyFAI-calib2 or Dioptas on one of them).")


def parse_poni_text(text: str) -> dict[str, Any]:
    """Parse PONI text (``key: value`` lines, ``#`` comments) into pyFAI's config dict."""
    config: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        config[key.strip().lower()] = value.strip()
    if "detector_config" in config:
        try:
            config["detector_config"] = json.loads(config["detector_config"])
        except json.JSONDecodeError as exc:
            raise GeometryError(f"Detector_config in the PONI is not valid JSON: {exc}") from exc
    return config


#: PONI keys that must be present.
_REQUIRED = ("distance", "poni1", "poni2")
#: PONI keys holding one number, with its unit (in pyFAI's PONI files).
_NUMBERS = {"distance": "m", "poni1": "m", "poni2": "m", "rot1": "rad", "rot2": "rad",
            "rot3": "rad", "wavelength": "m", "pixelsize1": "m", "pixelsize2": "m"}


def _unparsable(config: dict[str, Any]) -> list[str]:
    """One line per numeric PONI value that is not a number, naming its key and value (an
    optional key may say ``None``, as pyFAI writes an unset wavelength)."""
    problems = []
    for key, unit in _NUMBERS.items():
        value = config.get(key)
        if value is None or (key not in _REQUIRED and str(value).lower() == "none"):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            problems.append(f"{key.capitalize()}: {value!r} is not a number (expected {unit})")
    return problems


def integrator_from_poni_text(text: str, source: str = "<memory>") -> AzimuthalIntegrator:
    """Build a pyFAI ``AzimuthalIntegrator`` from PONI text, with a clear error if it fails."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator
    from pyFAI.io.ponifile import PoniFile

    config = parse_poni_text(text)
    problems = _unparsable(config)
    missing = [key.capitalize() for key in _REQUIRED if key not in config]
    if missing:
        problems.append(f"it has no {', '.join(missing)}, so it does not look like a pyFAI "
                        "PONI file")
    if problems:
        raise GeometryError(
            f"the PONI from {source} cannot be used: {'; '.join(problems)}. Fix the file, or "
            "calibrate the detector with pyFAI-calib2 and pass the .poni it writes."
        )
    try:
        poni = PoniFile(config)
        ai = AzimuthalIntegrator()
        ai._init_from_poni(poni)
    except Exception as exc:  # pyFAI raises many kinds here
        raise GeometryError(f"pyFAI could not build a geometry from {source}: {exc}") from exc
    if not ai.dist or ai.dist <= 0:
        raise GeometryError(f"the PONI from {source} has a non-positive distance ({ai.dist} m)")
    return ai


def poni_text_of(ai: AzimuthalIntegrator) -> str:
    """Serialise a pyFAI integrator to PONI text (pyFAI's own writer, comment lines dropped).

    pyFAI stamps the current time in a comment; without it, equal geometries give equal text
    and share one cached `Geometry` (and its pyFAI engines).
    """
    from pyFAI.io.ponifile import PoniFile

    buf = io.StringIO()
    PoniFile(ai).write(buf)
    return _strip_comments(buf.getvalue())


def _strip_comments(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines()]
    return "\n".join(ln for ln in lines if ln and not ln.lstrip().startswith("#")) + "\n"


def _detector_of(ai: AzimuthalIntegrator) -> Detector:
    # pyFAI types `detector` Optional, but its constructor always sets one
    det = ai.detector
    if det is None:
        raise GeometryError("the pyFAI integrator has no detector; build it from a PONI file")
    return det


# Four: a large detector's geometry holds about 1 GB of pixel tables (pyFAI's engines, 2θ/χ,
# ring and sector bins); a beamline uses one or two at a time, while an evaluation over random
# geometries held 16 of them (17 GB, killed for memory at 2880x2880 px).
@functools.lru_cache(maxsize=4)
def _cached_geometry(text: str, shape: tuple[int, int] | None, source: str) -> Geometry:
    ai = integrator_from_poni_text(text, source)
    det = _detector_of(ai)
    det_shape = det.max_shape
    if shape is None:
        if det_shape is None:
            raise GeometryError(
                f"the PONI from {source} names no detector shape; pass the frame shape too."
            )
        shape = (int(det_shape[0]), int(det_shape[1]))
    if det_shape is None:
        det.max_shape = shape
    return Geometry(ai, text, shape, source)


def as_geometry(poni: Any, shape: tuple[int, int] | None = None, *,
                source: str | None = None) -> Geometry:
    """Turn a PONI path, PONI text, `Geometry` or pyFAI integrator into a cached `Geometry`.

    Parameters
    ----------
    poni
        ``.poni`` file path, PONI text, a `Geometry`, or a pyFAI ``AzimuthalIntegrator``.
    shape
        Frame shape ``(rows, cols)`` in pixels; needed when the PONI names no detector shape.
        When the PONI does name one, a different ``shape`` raises `GeometryError`.
    source
        Where PONI text came from (e.g. the file it was read from), named in error messages.
    """
    if isinstance(poni, Geometry):
        if shape is not None:
            poni.check_frame(shape)
        return poni
    if hasattr(poni, "twoThetaArray") and hasattr(poni, "detector"):
        return _finish(_cached_geometry(poni_text_of(poni), None if shape is None else
                                        tuple(shape), "<integrator>"), shape)
    if isinstance(poni, Path) or (isinstance(poni, str) and "\n" not in poni):
        path = Path(poni)
        if not path.is_file():
            raise GeometryError(
                f"PONI file {str(path)!r} not found. Pass the .poni written by pyFAI-calib2 "
                "for this detector (`--poni FILE`)."
            )
        text = path.read_text(errors="replace")
        source = str(path)
    elif isinstance(poni, str):
        text, source = poni, source or "<memory>"
    else:
        raise GeometryError(
            f"cannot use {type(poni).__name__} as a geometry; pass a .poni path, PONI text, "
            "a Geometry or a pyFAI AzimuthalIntegrator."
        )
    key = _strip_comments(text)
    return _finish(_cached_geometry(key, None if shape is None else tuple(shape), source), shape)


def _finish(geo: Geometry, shape: tuple[int, int] | None) -> Geometry:
    if shape is not None:
        geo.check_frame(tuple(shape))
    det_shape = _detector_of(geo.integrator).max_shape
    if det_shape is not None and tuple(det_shape) != geo.shape:  # geo.shape is the frame's
        raise GeometryError(
            f"frame shape {geo.shape} does not match the detector shape {tuple(det_shape)} "
            f"of the PONI from {geo.source}. "
            f"{shape_mismatch_hint(geo.shape, tuple(int(n) for n in det_shape))}")
    return geo


def make_geometry(
    shape: tuple[int, int] = (2880, 2880),
    *,
    pixel_size_m: float = 150e-6,
    distance_m: float = 0.5,
    wavelength_m: float = 0.1839e-10,
    center_px: tuple[float, float] | None = None,
    rot1_rad: float = 0.0,
    rot2_rad: float = 0.0,
) -> Geometry:
    """Build a flat-detector geometry from plain numbers (used by the simulator and tests).

    Parameters
    ----------
    shape
        Detector shape ``(rows, cols)`` in pixels.
    pixel_size_m
        Square pixel size, metres (150 µm for a Varex 4343CT).
    distance_m
        Sample-detector distance, metres.
    wavelength_m
        Wavelength, metres (0.1839 Å ≈ 67.4 keV by default).
    center_px
        Beam centre ``(row, col)`` in pixels; the detector centre by default.
    rot1_rad, rot2_rad
        Detector tilts, radians (pyFAI convention).
    """
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    if center_px is None:
        center_px = (shape[0] / 2.0, shape[1] / 2.0)
    det = Detector(pixel1=pixel_size_m, pixel2=pixel_size_m, max_shape=tuple(shape))
    ai = AzimuthalIntegrator(
        dist=distance_m,
        poni1=center_px[0] * pixel_size_m,
        poni2=center_px[1] * pixel_size_m,
        rot1=rot1_rad,
        rot2=rot2_rad,
        rot3=0.0,
        detector=det,
        wavelength=wavelength_m,
    )
    return as_geometry(poni_text_of(ai), shape)


def poni_text_from(poni: Any) -> str | None:
    """PONI text from text, a ``.poni`` path or a `Geometry` (None stays None): the one place
    where a PONI given by a user (callback, worker, reprocessing) becomes text.

    Raises
    ------
    GeometryError
        A path that is not a file.
    """
    if poni is None:
        return None
    if hasattr(poni, "poni_text"):
        return str(poni.poni_text)
    if isinstance(poni, str) and "\n" in poni:
        return poni
    path = Path(poni)
    if not path.is_file():
        raise GeometryError(f"PONI file {str(path)!r} not found. Pass the .poni written by "
                            "pyFAI-calib2 for this detector (--poni FILE).")
    return path.read_text(errors="replace")
