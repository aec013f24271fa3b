"""Labelled synthetic 2D powder-XRD frames from real detector geometry.

>>> from xrd_bluesky_mask.simulate import preset, simulate_frame
>>> frame = simulate_frame(preset("spots_po", shape=(512, 512)), seed=1)
>>> frame.image.dtype, frame.labels.shape
(dtype('float32'), (512, 512))

Modules: `phases` (d-spacings, Å), `scene` (`SceneConfig`), `detector` (noise, beamstop,
gaps, defects), `presets` (presets), `random_scenes` (`random_scene`), `powder` (rings, PO, texture,
background), `spots` (spot shapes), `frame` (rendering, labels, noise).
"""

from .detector import Beamstop, Detector, Noise
from .frame import SimulatedFrame, SpotInfo, simulate_frame
from .phases import Phase, Reflection, get_phase, known_phases, two_theta_deg
from .powder import RingInfo
from .presets import PRESETS, preset
from .random_scenes import STYLES, random_scene
from .scene import (
    SPOT_KINDS,
    Background,
    LabelRule,
    PhaseSpec,
    PreferredOrientation,
    SceneConfig,
    Spots,
    SpotSpec,
    Texture,
)

__all__ = [
    "PRESETS",
    "SPOT_KINDS",
    "STYLES",
    "Background",
    "Beamstop",
    "Detector",
    "LabelRule",
    "Noise",
    "Phase",
    "PhaseSpec",
    "PreferredOrientation",
    "Reflection",
    "RingInfo",
    "SceneConfig",
    "SimulatedFrame",
    "SpotInfo",
    "SpotSpec",
    "Spots",
    "Texture",
    "get_phase",
    "known_phases",
    "preset",
    "random_scene",
    "simulate_frame",
    "two_theta_deg",
]
