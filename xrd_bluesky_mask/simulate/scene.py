"""Scene description for the simulator: `SceneConfig` (pydantic v2) and its parts.

A scene is everything that defines a frame except the random seed: geometry, phases, ring
shape, flux, background, preferred orientation (PO), texture, single-crystal spots, noise,
detector defects and the ground-truth label rule. Intensities are in detector counts (ADU);
``flux`` is the expected count level at the peak of the strongest ring (before PO/texture),
and the background terms are fractions of ``flux``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ..geometry import Geometry, make_geometry
from .detector import Detector, Noise, _Model

SpotKind = Literal["gaussian", "lorentzian", "streak", "cluster", "pair", "extreme"]
#: The shapes drawn by the first random scenes (``scenes="v2"``); ``extreme`` (a sub-pixel,
#: very bright spot on a sharp ring) comes with ``Spots.extreme_fraction``.
SPOT_KINDS: tuple[SpotKind, ...] = ("gaussian", "lorentzian", "streak", "cluster", "pair")
StreakOrientation = Literal["random", "radial", "tangential", "mixed"]


class PhaseSpec(_Model):
    """One phase in the scene.

    Attributes
    ----------
    name
        Phase name (see `xrd_bluesky_mask.simulate.phases.get_phase`).
    weight
        Relative scale of the phase's rings (the brightest ring of the scene peaks at ``flux``).
    fwhm_scale
        Multiplies the scene's ``ring_fwhm_deg`` for this phase (size/strain broadening).
    """

    name: str
    weight: float = Field(default=1.0, gt=0)
    fwhm_scale: float = Field(default=1.0, gt=0)


class Background(_Model):
    """Smooth background, all amplitudes as fractions of ``flux`` (counts).

    ``bg(2θ) = constant + radial·exp(-2θ/radial_scale_deg) + air·exp(-2θ/air_scale_deg)
    + hump·exp(-½((2θ-hump_center_deg)/hump_width_deg)²)``.
    """

    constant: float = Field(default=0.02, ge=0)
    radial: float = Field(default=0.05, ge=0)
    radial_scale_deg: float = Field(default=10.0, gt=0)
    air: float = Field(default=0.1, ge=0)
    air_scale_deg: float = Field(default=1.5, gt=0)
    hump: float = Field(default=0.0, ge=0)
    hump_center_deg: float = 6.0
    hump_width_deg: float = Field(default=2.0, gt=0)


class PreferredOrientation(_Model):
    """Centro-symmetric azimuthal bands along rings: bright at χ0 and χ0+180°.

    Along a ring the intensity is multiplied by ``base + (strength - base)·band(χ)``, ``band``
    being a sum of two Gaussians (FWHM ``width_deg``) centred at χ0 and χ0+180°, so the band
    peaks at ``strength`` × the ring level (up to 50×, as bright as spots).

    Attributes
    ----------
    enabled
        Apply PO.
    strength
        Band peak over the untextured ring level (≥ 1).
    base
        Level away from the bands relative to the untextured ring (≤ 1 thins the ring).
    width_deg
        Band FWHM in χ, degrees.
    chi0_deg
        Band azimuth, degrees; ``None`` draws one per frame from the seed.
    ring_jitter
        Fraction of rings whose band is rotated (by 90° or at random) and whose strength is
        scaled down at random, as different hkl sample different pole-figure regions.
    """

    enabled: bool = False
    strength: float = Field(default=6.0, ge=1.0, le=100.0)
    base: float = Field(default=0.6, gt=0, le=1.0)
    width_deg: float = Field(default=20.0, gt=0, le=180.0)
    chi0_deg: float | None = None
    ring_jitter: float = Field(default=0.3, ge=0, le=1)


class Texture(_Model):
    """Graininess: multiplicative random modulation along χ per ring, plus arcs.

    The modulation is ``exp(amplitude·z(χ) - amplitude²/2)`` (mean 1) where ``z`` is unit
    Gaussian noise correlated over ``correlation_deg`` (Gaussian kernel FWHM). Arcs are
    extra Gaussian brightenings along χ (not centro-symmetric).
    """

    enabled: bool = False
    amplitude: float = Field(default=0.5, ge=0, le=3.0)
    correlation_deg: float = Field(default=1.0, gt=0, le=90.0)
    arcs_per_ring: float = Field(default=0.0, ge=0)
    arc_strength: float = Field(default=2.0, ge=0)
    arc_width_deg: float = Field(default=8.0, gt=0)


class SpotSpec(_Model):
    """A spot placed explicitly (for constructed test cases).

    Attributes
    ----------
    row, col
        Centre, px (continuous; pixel ``(i, j)`` has its centre at ``(i, j)``).
    size_px
        FWHM, px (major axis for streaks).
    peak_counts
        Peak excess over the spot-free image, counts; ``None`` uses ``peak_rel``.
    peak_rel
        Peak excess relative to the local spot-free level at the centre.
    kind
        Spot shape (``"pair"`` renders one Gaussian member; place two specs for a pair).
    angle_deg
        Orientation (streaks, elliptical Gaussians), degrees from the column axis.
    aspect
        Minor/major FWHM ratio of a Gaussian spot (1 = round).
    """

    row: float
    col: float
    size_px: float = Field(default=3.0, gt=0)
    peak_counts: float | None = Field(default=None, ge=0)
    peak_rel: float = Field(default=5.0, ge=0)
    kind: SpotKind = "gaussian"
    angle_deg: float = 0.0
    aspect: float = Field(default=1.0, gt=0, le=1)


class Spots(_Model):
    """Random single-crystal spots (plus explicit ``fixed`` ones).

    Attributes
    ----------
    count
        Number of random spots (a ``pair`` counts as one draw but yields two spots).
    on_ring_fraction
        Fraction placed on a ring (the rest anywhere, mostly between rings).
    size_px
        ``(min, max)`` FWHM, px, drawn log-uniformly (1-15 px realistic).
    kinds
        Relative weights of the spot shapes.
    rel_brightness
        ``(min, max)`` peak excess relative to the local spot-free level, drawn log-uniformly
        (0.3 = barely above the ring).
    saturated_fraction
        Fraction of spots made bright enough to saturate the detector.
    fixed
        Explicitly placed spots.
    streak_length_px
        ``(min, max)`` length of streaks, px, drawn log-uniformly; ``None`` draws streak
        lengths from ``size_px`` like other spots.
    streak_orientation
        ``random``; ``radial`` or ``tangential`` (along or across the direction to the beam
        centre, ±10°); ``mixed`` (each streak one of the three).
    streak_taper
        Largest dimming of a streak towards its ends (0-1, see `spots.Streak`).
    moffat_beta
        Range of the Moffat exponent of ``lorentzian`` spots (1 = heaviest wings).
    reach_px
        Largest render half-size of a spot, px: how far heavy wings extend.
    near_edge_fraction
        Fraction of random spots placed within ``near_edge_px`` of the frame's edges, a
        corner, or a module gap.
    near_edge_px
        Largest distance to the edge, corner or gap, px.
    extreme_fraction
        Fraction of random spots that are ``extreme``: FWHM 0.3-1.2 px, 30-3000× the local
        level, on the centre of a ring (the brightest pixels of a sharp-ring frame).
    """

    count: int = Field(default=0, ge=0)
    on_ring_fraction: float = Field(default=0.6, ge=0, le=1)
    size_px: tuple[float, float] = (1.0, 15.0)
    kinds: dict[SpotKind, float] = Field(default_factory=lambda: {
        "gaussian": 0.4, "lorentzian": 0.2, "streak": 0.15, "cluster": 0.15, "pair": 0.1})
    rel_brightness: tuple[float, float] = (0.3, 300.0)
    saturated_fraction: float = Field(default=0.05, ge=0, le=1)
    fixed: tuple[SpotSpec, ...] = ()
    streak_length_px: tuple[float, float] | None = None
    streak_orientation: StreakOrientation = "random"
    streak_taper: float = Field(default=0.0, ge=0, le=1)
    moffat_beta: tuple[float, float] = (1.2, 2.5)
    reach_px: float = Field(default=48.0, ge=4)
    near_edge_fraction: float = Field(default=0.0, ge=0, le=1)
    near_edge_px: float = Field(default=12.0, ge=1)
    extreme_fraction: float = Field(default=0.0, ge=0, le=1)

    @field_validator("size_px", "rel_brightness", "streak_length_px", "moffat_beta")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] <= v[1]:
            raise ValueError(f"need 0 < min <= max, got {v}")
        return v

    @field_validator("kinds")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"spot kind weights must be >= 0 with a positive sum, got {v}")
        return v


class LabelRule(_Model):
    """Ground truth: a pixel is a spot pixel where the spot excess is detectable.

    ``excess > nsigma·σ  or  (excess > rel·level and excess > min_nsigma·σ)``, with
    ``σ = sqrt(gain·level + read_noise²)`` from the spot-free ``level`` (counts); then
    dilation by ``dilate_px`` pixels (8-connected). Static-masked pixels are never spots.
    """

    nsigma: float = Field(default=3.0, gt=0)
    rel: float = Field(default=0.10, gt=0)
    min_nsigma: float = Field(default=1.0, ge=0)
    dilate_px: int = Field(default=1, ge=0)


class SceneConfig(_Model):
    """Everything that defines a simulated frame except the seed.

    Attributes
    ----------
    name
        Preset or style name (metadata).
    shape
        Frame ``(rows, cols)``, px.
    pixel_size_um
        Square pixel size, µm.
    distance_m
        Sample-detector distance, m.
    wavelength_angstrom
        Wavelength, Å.
    beam_center_frac
        Beam centre (PONI) ``(row, col)`` as a fraction of ``shape`` (may lie off the frame).
    rot1_deg, rot2_deg
        Detector tilts, degrees (pyFAI convention).
    phases
        Phases in the sample.
    ring_fwhm_deg
        Intrinsic ring FWHM in 2θ, degrees (0.02-0.15 realistic); combined in quadrature
        with a pixel-size floor of ``pixel_floor`` × the 2θ width of one pixel.
    ring_eta
        Lorentzian fraction of the pseudo-Voigt ring profile.
    pixel_floor
        Pixel-size floor of the ring FWHM, in pixels.
    min_ring_intensity
        Rings weaker than this fraction of the strongest are dropped.
    flux
        Expected counts at the peak of the strongest ring (before PO/texture).
    polarization
        Polarisation factor (pyFAI convention, 0.9-0.99 at synchrotrons); ``None`` = none.
    """

    name: str = "custom"
    shape: tuple[int, int] = (2880, 2880)
    pixel_size_um: float = Field(default=150.0, gt=0)
    distance_m: float = Field(default=0.5, gt=0)
    wavelength_angstrom: float = Field(default=0.1839, gt=0)
    beam_center_frac: tuple[float, float] = (0.5, 0.5)
    rot1_deg: float = 0.0
    rot2_deg: float = 0.0
    phases: tuple[PhaseSpec, ...] = (PhaseSpec(name="CeO2"),)
    ring_fwhm_deg: float = Field(default=0.05, gt=0, le=2.0)
    ring_eta: float = Field(default=0.3, ge=0, le=1)
    pixel_floor: float = Field(default=1.0, ge=0)
    min_ring_intensity: float = Field(default=1e-4, ge=0, lt=1)
    flux: float = Field(default=1e4, gt=0)
    background: Background = Background()
    polarization: float | None = Field(default=None, ge=-1, le=1)
    po: PreferredOrientation = PreferredOrientation()
    texture: Texture = Texture()
    spots: Spots = Spots()
    noise: Noise = Noise()
    detector: Detector = Detector()
    labels: LabelRule = LabelRule()

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 8 or v[1] < 8:
            raise ValueError(f"frame shape must be at least 8x8 px, got {v}")
        return v

    @field_validator("phases", mode="before")
    @classmethod
    def _phases(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        return tuple({"name": p} if isinstance(p, str) else p for p in v)

    @model_validator(mode="after")
    def _check(self) -> SceneConfig:
        if self.phases:
            from .phases import get_phase

            for p in self.phases:
                get_phase(p.name, 1.0)  # raises ValueError for an unknown phase
        return self

    @property
    def center_px(self) -> tuple[float, float]:
        """Beam centre (PONI) ``(row, col)``, px."""
        return (self.beam_center_frac[0] * self.shape[0],
                self.beam_center_frac[1] * self.shape[1])

    def geometry(self) -> Geometry:
        """The scene's detector `Geometry` (the 4 most recent ones are cached here)."""
        return _geometry(tuple(self.shape), self.pixel_size_um, self.distance_m,
                         self.wavelength_angstrom, self.center_px, self.rot1_deg, self.rot2_deg)

    def with_shape(self, shape: tuple[int, int]) -> SceneConfig:
        """The same scene on a detector with ``shape`` pixels covering the same area.

        The pixel size scales by ``old/new`` (so the 2θ range is kept, like binning); the
        beamstop radius and arm width and the module/gap sizes scale with it (gaps stay ≥ 1
        px). Spot counts and spot sizes in px are kept.
        """
        shape = (int(shape[0]), int(shape[1]))
        if shape == tuple(self.shape):
            return self
        f = max(self.shape[0] / shape[0], self.shape[1] / shape[1])
        det = self.detector
        bs = det.beamstop.model_copy(update={"radius_px": max(det.beamstop.radius_px / f, 1.0),
                                             "arm_width_px": det.beamstop.arm_width_px / f})
        upd: dict[str, Any] = {"beamstop": bs}
        if det.module_px is not None:
            upd["module_px"] = (max(int(round(det.module_px[0] / f)), 4),
                                max(int(round(det.module_px[1] / f)), 4))
            upd["gap_px"] = (max(int(round(det.gap_px[0] / f)), 1),
                             max(int(round(det.gap_px[1] / f)), 1))
        return self.model_copy(update={
            "shape": shape,
            "pixel_size_um": self.pixel_size_um * f,
            "detector": det.model_copy(update=upd),
        })

    def updated(self, **overrides: Any) -> SceneConfig:
        """A validated copy with ``overrides`` applied; nested parts merge with dicts.

        Example: ``cfg.updated(flux=100, po={"strength": 20}, shape=(512, 512))``. A
        ``shape`` override goes through `with_shape` (same detector area).
        """
        shape = overrides.pop("shape", None)
        base = self.with_shape(shape) if shape is not None else self
        data = base.model_dump()
        return SceneConfig.model_validate(_merge(data, overrides))


@functools.lru_cache(maxsize=4)
def _geometry(shape: tuple[int, int], pixel_size_um: float, distance_m: float,
              wavelength_angstrom: float, center_px: tuple[float, float], rot1_deg: float,
              rot2_deg: float) -> Geometry:
    # Cached here because `make_geometry`'s PONI text carries a timestamp, so its own cache
    # (keyed by that text) misses on every call and the per-pixel 2θ/χ arrays are rebuilt.
    return make_geometry(shape, pixel_size_m=pixel_size_um * 1e-6, distance_m=distance_m,
                         wavelength_m=wavelength_angstrom * 1e-10, center_px=center_px,
                         rot1_rad=math.radians(rot1_deg), rot2_rad=math.radians(rot2_deg))


def _merge(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, val in overrides.items():
        if isinstance(val, BaseModel):
            val = val.model_dump()
        if isinstance(val, dict) and isinstance(out.get(key), dict) and key != "kinds":
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out
