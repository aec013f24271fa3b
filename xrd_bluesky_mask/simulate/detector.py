"""Simulated detector response and defects: noise, beamstop (with its bright rim), module gaps,
dead and hot pixels, saturation. Parts of a `~xrd_bluesky_mask.simulate.scene.SceneConfig`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Noise(_Model):
    """Detector response: ``image = gain·Poisson(expected/gain) + N(0, read_noise)`` counts.

    ``gain`` is counts (ADU) per photon; ``read_noise`` is in counts. With ``enabled=False``
    the image is the noise-free expectation, but ``gain`` and ``read_noise`` still set the
    σ that the label rule uses. ``integer`` rounds what the detector reports to whole counts,
    as photon-counting detectors (Pilatus, Eiger) and most integrating ones write them (the
    frame stays float32; its values are integers).
    """

    enabled: bool = True
    gain: float = Field(default=1.0, gt=0)
    read_noise: float = Field(default=2.0, ge=0)
    integer: bool = False


class Beamstop(_Model):
    """Beamstop shadow: a disc at the beam centre and an arm to the detector edge (px).

    ``rim`` adds the bright rim that scattering off the beamstop's edge leaves just outside
    its shadow: ``rim·flux·exp(-d/rim_width_px)`` counts at ``d`` px from the shadow. It is
    part of the spot-free image (never a spot): a hard negative.
    """

    enabled: bool = False
    radius_px: float = Field(default=40.0, gt=0)
    arm_width_px: float = Field(default=12.0, ge=0)
    arm_angle_deg: float = 90.0
    transmission: float = Field(default=0.02, ge=0, le=1)
    rim: float = Field(default=0.0, ge=0)
    rim_width_px: float = Field(default=3.0, gt=0)


class Detector(_Model):
    """Detector defects and limits; all of them go to the static mask.

    Attributes
    ----------
    saturation
        Largest value the detector reports, counts.
    module_px
        Module size ``(rows, cols)`` px; gaps are inserted between modules. ``None`` = no gaps.
    gap_px
        Gap width ``(rows, cols)`` px.
    gap_value
        Value of gap pixels (pyFAI/Pilatus convention -1).
    dead_fraction, dead_value
        Fraction of dead pixels and their value (0 or -1).
    hot_fraction
        Fraction of hot pixels (reading ``saturation``); defects, never spots.
    beamstop
        Beamstop shadow.
    """

    saturation: float = Field(default=1_048_575.0, gt=0)
    module_px: tuple[int, int] | None = None
    gap_px: tuple[int, int] = (17, 7)
    gap_value: float = -1.0
    dead_fraction: float = Field(default=0.0, ge=0, le=0.1)
    dead_value: float = 0.0
    hot_fraction: float = Field(default=0.0, ge=0, le=0.1)
    beamstop: Beamstop = Beamstop()
