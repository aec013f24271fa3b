"""Scene presets mirroring the paper's datasets, and the phases training scenes leave out.

Presets (Varex 4343CT-like: 2880×2880 px of 150 µm at 0.5 m, λ = 0.1839 Å):

``perfect``
    Perfect CeO2 rings only: no spots, no preferred orientation, no texture.
``rings_spots``
    Smooth rings of a layered oxide (NMC) and Al with single-crystal spots.
``spots_po``
    Ni rings with strong preferred orientation (centro-symmetric bands) and spots.
``spots_texture``
    Grainy, textured Cu + graphite rings (multiplicative χ modulation, arcs) and spots.

The broadly randomised training scenes are `xrd_bluesky_mask.simulate.random_scenes`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .detector import Beamstop, Detector
from .scene import (
    PhaseSpec,
    PreferredOrientation,
    SceneConfig,
    Spots,
    Texture,
)

_DETECTOR = Detector(saturation=65535.0, dead_fraction=2e-5, hot_fraction=5e-6,
                     beamstop=Beamstop(enabled=True, radius_px=40.0, arm_width_px=12.0,
                                       arm_angle_deg=90.0))
_SPOTS = Spots(count=80)


def _perfect() -> SceneConfig:
    return SceneConfig(name="perfect", phases=(PhaseSpec(name="CeO2"),), detector=_DETECTOR)


def _rings_spots() -> SceneConfig:
    return SceneConfig(name="rings_spots",
                       phases=(PhaseSpec(name="NMC"), PhaseSpec(name="Al", weight=0.5)),
                       spots=_SPOTS, detector=_DETECTOR)


def _spots_po() -> SceneConfig:
    return SceneConfig(name="spots_po", phases=(PhaseSpec(name="Ni"),),
                       po=PreferredOrientation(enabled=True, strength=10.0, base=0.5,
                                               width_deg=15.0, ring_jitter=0.3),
                       spots=_SPOTS, detector=_DETECTOR)


def _spots_texture() -> SceneConfig:
    return SceneConfig(name="spots_texture",
                       phases=(PhaseSpec(name="Cu"), PhaseSpec(name="graphite", weight=0.4)),
                       texture=Texture(enabled=True, amplitude=0.8, correlation_deg=0.4,
                                       arcs_per_ring=1.5, arc_strength=2.0, arc_width_deg=8.0),
                       spots=_SPOTS, detector=_DETECTOR)


PRESETS: dict[str, Callable[[], SceneConfig]] = {
    "rings_spots": _rings_spots,
    "spots_po": _spots_po,
    "spots_texture": _spots_texture,
    "perfect": _perfect,
}

def preset(name: str, **overrides: Any) -> SceneConfig:
    """A preset scene, optionally modified.

    Parameters
    ----------
    name
        ``"rings_spots"``, ``"spots_po"``, ``"spots_texture"`` or ``"perfect"``.
    **overrides
        `SceneConfig` fields; nested parts accept dicts that merge, e.g.
        ``preset("spots_po", shape=(512, 512), flux=100, po={"strength": 30})``. ``shape``
        keeps the detector area (`SceneConfig.with_shape`).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or invalid overrides.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown scene preset {name!r}; known presets: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    return cfg.updated(**overrides) if overrides else cfg


#: Phases left out of training scenes, so evaluation can test transfer to unseen phases.
HELD_OUT_PHASES: tuple[str, ...] = ("Fe", "LaB6")
