"""Broadly randomised scenes for training data: `random_scene` and its scene sets.

A scene set is a table of styles (the presets' looks, spot-free hard negatives, and from v3 on
focus styles on a base style) with the share of scenes drawn in each: ``"v2"`` (`STYLES`, what
the first default models were trained on), ``"v3"`` (`STYLES_V3`: broadened by `broaden_scene`)
and ``"v4"`` (`STYLES_V4`: also `broaden_scene_v4`). Every draw is a deterministic function of
the generator's state, so a recorded seed reproduces a training set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .detector import Beamstop, Detector, Noise
from .phases import known_phases
from .scene import (
    SPOT_KINDS,
    Background,
    PhaseSpec,
    PreferredOrientation,
    SceneConfig,
    Spots,
    Texture,
)

__all__ = ["FOCUS_STYLES", "SCENE_SETS", "STYLES", "STYLES_V3", "STYLES_V4", "V4_STYLES",
           "broaden_scene", "broaden_scene_v4", "random_scene"]

#: Styles of `random_scene`: the presets plus spot-free hard negatives.
STYLES: dict[str, float] = {
    "rings_spots": 0.30,
    "spots_po": 0.22,
    "spots_texture": 0.23,
    "negative_po": 0.10,
    "negative_texture": 0.10,
    "perfect": 0.05,
}


def _lu(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform draw in ``[lo, hi]``."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


#: Styles of ``random_scene(scenes="v3")``: the v2 styles plus scenes that focus on one
#: hard case (each on a base style, see `FOCUS_STYLES`).
STYLES_V3: dict[str, float] = {
    "rings_spots": 0.20,
    "spots_po": 0.14,
    "spots_texture": 0.16,
    "negative_po": 0.08,
    "negative_texture": 0.10,
    "perfect": 0.04,
    "streaks": 0.08,
    "heavy_tails": 0.07,
    "edges": 0.06,
    "extreme_pixels": 0.07,
}

#: Focus styles and the base style each one is drawn on.
FOCUS_STYLES: dict[str, str] = {
    "streaks": "rings_spots",
    "heavy_tails": "rings_spots",
    "edges": "spots_texture",
    "extreme_pixels": "spots_texture",
}

#: Styles of ``random_scene(scenes="v4")``: the v3 styles plus faint spots on bright and grainy
#: rings (the bulk of what v3 missed) and spot-free hard negatives with sharp rings, strong
#: preferred orientation on sharp rings, and grainy texture at low and high counts (what v3
#: over-masked); see `broaden_scene_v4`.
STYLES_V4: dict[str, float] = {
    "rings_spots": 0.12,
    "spots_po": 0.09,
    "spots_texture": 0.10,
    "negative_po": 0.05,
    "negative_texture": 0.06,
    "perfect": 0.02,
    "streaks": 0.06,
    "heavy_tails": 0.05,
    "edges": 0.04,
    "extreme_pixels": 0.05,
    "faint_spots": 0.12,
    "faint_on_texture": 0.10,
    "negative_sharp": 0.07,
    "negative_grainy": 0.07,
}

#: Focus styles and the base style each one is drawn on.
FOCUS_STYLES.update({
    "faint_spots": "rings_spots",
    "faint_on_texture": "spots_texture",
    "negative_sharp": "negative_po",
    "negative_grainy": "negative_texture",
})

#: Styles that only the v4 scene set has.
V4_STYLES = ("faint_spots", "faint_on_texture", "negative_sharp", "negative_grainy")

SCENE_SETS = ("v2", "v3", "v4")


def random_scene(rng: np.random.Generator, *, shape: tuple[int, int] = (2880, 2880),
                 preset: str | None = None,
                 phase_pool: tuple[str, ...] | None = None,
                 scenes: str = "v2") -> SceneConfig:
    """A broadly randomised scene for training data.

    Parameters
    ----------
    rng
        Random generator (the scene is a deterministic function of its state).
    shape
        Frame ``(rows, cols)``, px. Pixel sizes stay physical (75-200 µm), so a small shape
        behaves like a crop of a large detector; the distance is drawn so that the far corner
        sits at 2θ = 8-40° (distance clipped to 0.08-3 m).
    preset
        Style: a preset name, ``"negative_po"`` or ``"negative_texture"`` (strong PO or
        grainy rings with no spots: hard negatives); ``None`` draws one from `STYLES`.
    phase_pool
        Phases to draw from; None = every known phase. Training uses the known phases minus
        `~xrd_bluesky_mask.simulate.presets.HELD_OUT_PHASES`, evaluation's transfer set only
        those.
    scenes
        ``"v2"``: the scenes the first two default models were trained on (kept so their
        recorded commands reproduce). ``"v3"``: those broadened (`broaden_scene`) with long
        tapering streaks along and across the rings, heavier-tailed spots, spots at edges,
        corners and gaps, extreme sub-pixel spots on sharp rings, bright beamstop rims, and
        the focus styles of `STYLES_V3`. A focus style as ``preset`` implies ``"v3"``.

    Returns
    -------
    SceneConfig
        With ``name`` set to the style. Randomised: geometry (pixel size, distance,
        wavelength 20-110 keV, beam centre incl. off-centre, tilt ≤ 4°), phases (1-3),
        ring widths, flux (10-1e5 counts, log-uniform), background, polarisation, PO,
        texture, spot count/styles/brightness, gain, read noise, saturation, module gaps,
        beamstop, dead and hot pixels.
    """
    if scenes not in SCENE_SETS:
        raise ValueError(f"unknown scene set {scenes!r}; use one of {', '.join(SCENE_SETS)}")
    styles = {"v2": STYLES, "v3": STYLES_V3, "v4": STYLES_V4}[scenes]
    if preset is None:
        names = list(styles)
        p = np.array([styles[n] for n in names])
        style = names[int(rng.choice(len(names), p=p / p.sum()))]
    elif preset in STYLES_V4:
        style = preset
    else:
        raise ValueError(f"unknown scene style {preset!r}; known styles: {', '.join(STYLES_V4)}")
    if style in V4_STYLES:
        scenes = "v4"
    cfg = _base_scene(rng, (int(shape[0]), int(shape[1])), FOCUS_STYLES.get(style, style),
                      phase_pool)
    if scenes != "v2" or style in FOCUS_STYLES:
        cfg = broaden_scene(cfg, style, rng)
    if scenes == "v4":
        cfg = broaden_scene_v4(cfg, style, rng)
    return cfg.model_copy(update={"name": style})


def _base_scene(rng: np.random.Generator, shape: tuple[int, int], style: str,
                phase_pool: tuple[str, ...] | None) -> SceneConfig:
    h, w = shape
    pix_um = float(rng.uniform(75.0, 200.0))
    energy_kev = float(rng.uniform(20.0, 110.0))
    if rng.random() < 0.65:
        frac = (0.5 + float(rng.normal(0, 0.03)), 0.5 + float(rng.normal(0, 0.03)))
    else:
        frac = (float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 0.95)))
    cy, cx = frac[0] * h, frac[1] * w
    r_max_m = max(math.hypot(y - cy, x - cx) for y in (0, h) for x in (0, w)) * pix_um * 1e-6
    dist = float(np.clip(r_max_m / math.tan(math.radians(rng.uniform(8.0, 40.0))), 0.08, 3.0))
    tilt = np.clip(rng.normal(0.0, 1.5, 2), -4.0, 4.0)

    names = list(phase_pool) if phase_pool else list(known_phases())
    unknown = sorted(set(names) - set(known_phases()))
    if unknown:
        raise ValueError(f"unknown phases {unknown}; known: {', '.join(known_phases())}")
    n_ph = min(int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15])), len(names))
    picked = rng.choice(len(names), n_ph, replace=False)
    phases = tuple(PhaseSpec(name=names[int(i)], weight=1.0 if j == 0 else _lu(rng, 0.1, 1.0),
                             fwhm_scale=float(rng.uniform(0.7, 1.6)))
                   for j, i in enumerate(picked))
    flux = _lu(rng, 10.0, 1e5)

    bg = Background(constant=float(rng.uniform(0.0, 0.1)), radial=float(rng.uniform(0.0, 0.3)),
                    radial_scale_deg=float(rng.uniform(3.0, 20.0)),
                    air=float(rng.uniform(0.0, 0.5)), air_scale_deg=float(rng.uniform(0.5, 4.0)),
                    hump=float(rng.uniform(0.02, 0.3)) if rng.random() < 0.3 else 0.0,
                    hump_center_deg=float(rng.uniform(3.0, 15.0)),
                    hump_width_deg=float(rng.uniform(1.0, 5.0)))

    strong_po = style in ("spots_po", "negative_po")
    if strong_po or rng.random() < 0.15:
        po = PreferredOrientation(
            enabled=True,
            strength=_lu(rng, 2.0, 50.0) if strong_po else _lu(rng, 1.3, 3.0),
            base=float(rng.uniform(0.2, 1.0)), width_deg=_lu(rng, 3.0, 60.0),
            ring_jitter=float(rng.uniform(0.0, 0.6)))
    else:
        po = PreferredOrientation()
    grainy = style in ("spots_texture", "negative_texture")
    if grainy or rng.random() < 0.2:
        tex = Texture(enabled=True,
                      amplitude=float(rng.uniform(0.3, 1.5)) if grainy
                      else float(rng.uniform(0.05, 0.3)),
                      correlation_deg=_lu(rng, 0.05, 10.0),
                      arcs_per_ring=float(rng.uniform(0.0, 3.0)) if grainy else 0.0,
                      arc_strength=float(rng.uniform(0.5, 5.0)),
                      arc_width_deg=float(rng.uniform(2.0, 20.0)))
    else:
        tex = Texture()

    if style.startswith("negative") or style == "perfect":
        spots = Spots(count=0)
    else:
        mpx = h * w / 1e6
        count = max(int(round(_lu(rng, 2.0, 40.0) * mpx)), int(rng.integers(1, 6)))
        kw = rng.dirichlet(np.ones(len(SPOT_KINDS)))
        spots = Spots(count=count, on_ring_fraction=float(rng.uniform(0.3, 0.9)),
                      size_px=(float(rng.uniform(1.0, 2.5)), float(rng.uniform(4.0, 15.0))),
                      kinds={k: float(x) for k, x in zip(SPOT_KINDS, kw, strict=True)},
                      rel_brightness=(float(rng.uniform(0.2, 0.5)), _lu(rng, 10.0, 1000.0)),
                      saturated_fraction=float(rng.uniform(0.0, 0.15)))

    peak_mod = po.strength if po.enabled else 1.0
    saturation = float(rng.choice([65535.0, 1048575.0, 4194303.0]))
    saturation = max(saturation, 4.0 * flux * peak_mod)
    mm = 1000.0 / pix_um  # px per mm
    in_frame = 0 <= cy < h and 0 <= cx < w
    beamstop = Beamstop(enabled=bool(in_frame and rng.random() < 0.7),
                        radius_px=float(rng.uniform(1.5, 5.0)) * mm,
                        arm_width_px=float(rng.uniform(0.5, 2.0)) * mm,
                        arm_angle_deg=float(rng.uniform(0.0, 360.0)),
                        transmission=float(rng.uniform(0.0, 0.05)))
    module = None
    gap = (17, 7)
    if rng.random() < 0.3:
        module = (int(rng.integers(max(h // 8, 16), max(h // 2, 17))),
                  int(rng.integers(max(w // 8, 16), max(w // 2, 17))))
        gmax = max(3, min(21, min(h, w) // 40))
        gap = (int(rng.integers(2, gmax + 1)), int(rng.integers(2, gmax + 1)))
    detector = Detector(
        saturation=saturation, module_px=module, gap_px=gap,
        gap_value=float(rng.choice([-1.0, 0.0])),
        dead_fraction=_lu(rng, 1e-6, 1e-4) if rng.random() < 0.5 else 0.0,
        dead_value=float(rng.choice([0.0, -1.0])),
        hot_fraction=_lu(rng, 1e-7, 2e-5) if rng.random() < 0.5 else 0.0,
        beamstop=beamstop)

    return SceneConfig(
        name=style, shape=(h, w), pixel_size_um=pix_um, distance_m=dist,
        wavelength_angstrom=12.398419843 / energy_kev, beam_center_frac=frac,
        rot1_deg=float(tilt[0]), rot2_deg=float(tilt[1]), phases=phases,
        ring_fwhm_deg=_lu(rng, 0.02, 0.15), ring_eta=float(rng.uniform(0.0, 0.7)),
        flux=flux, background=bg,
        polarization=float(rng.uniform(0.9, 0.99)) if rng.random() < 0.5 else None,
        po=po, texture=tex, spots=spots,
        noise=Noise(gain=_lu(rng, 0.5, 4.0), read_noise=float(rng.uniform(0.0, 10.0))),
        detector=detector)


def broaden_scene(cfg: SceneConfig, style: str, rng: np.random.Generator) -> SceneConfig:
    """Add the v3 cases to a random scene: spot shapes and places the v2 scenes lacked.

    Every scene with spots gets long streaks (log-uniform lengths up to 40-400 px, along,
    across or at random to the rings, tapering ends), heavier Moffat wings (β down to 1,
    rendered up to 48-160 px out), a share of spots within a few px of edges, corners and
    module gaps, and sometimes extreme sub-pixel spots on ring centres. Beamstops get a
    bright rim half of the time. Focus styles push one case to most of the spots:
    ``streaks``, ``heavy_tails``, ``edges``, ``extreme_pixels`` (on sharp, grainy rings).
    """
    upd: dict[str, Any] = {}
    bs = cfg.detector.beamstop
    if bs.enabled and rng.random() < 0.5:
        upd["detector"] = {"beamstop": {"rim": _lu(rng, 0.02, 1.0),
                                        "rim_width_px": float(rng.uniform(1.0, 6.0))}}
    if cfg.spots.count > 0:
        sp: dict[str, Any] = {
            "streak_length_px": (_lu(rng, 3.0, 10.0), _lu(rng, 40.0, 400.0)),
            "streak_orientation": "mixed",
            "streak_taper": float(rng.uniform(0.0, 0.9)),
            "moffat_beta": (1.0, 2.5),
            "reach_px": _lu(rng, 48.0, 160.0),
            "near_edge_fraction": float(rng.uniform(0.05, 0.3)),
            "near_edge_px": float(rng.uniform(3.0, 20.0)),
            "extreme_fraction": float(rng.uniform(0.0, 0.1)) if rng.random() < 0.5 else 0.0,
        }
        if style == "streaks":
            sp["kinds"] = {"streak": 0.8, "gaussian": 0.1, "cluster": 0.1}
            sp["streak_length_px"] = (_lu(rng, 8.0, 20.0), _lu(rng, 100.0, 600.0))
        elif style == "heavy_tails":
            sp["kinds"] = {"lorentzian": 0.8, "pair": 0.1, "gaussian": 0.1}
            sp["moffat_beta"] = (1.0, 1.6)
            sp["reach_px"] = 160.0
            sp["rel_brightness"] = (0.5, _lu(rng, 100.0, 3000.0))
        elif style == "edges":
            sp["near_edge_fraction"] = 0.8
        elif style == "extreme_pixels":
            sp["extreme_fraction"] = float(rng.uniform(0.3, 0.7))
            upd["ring_fwhm_deg"] = _lu(rng, 0.012, 0.04)
            upd["pixel_floor"] = float(rng.uniform(0.5, 1.0))
        upd["spots"] = sp
    return cfg.updated(**upd) if upd else cfg


def broaden_scene_v4(cfg: SceneConfig, style: str, rng: np.random.Generator) -> SceneConfig:
    """Add the v4 cases to a (v3-broadened) random scene: faint spots and hard negatives.

    Every scene: integer counts (a photon-counting detector: gain 1, no read noise) a third of
    the time, and a quarter of the spots of a scene with spots faint (0.3-2x the local powder
    level, sharp or wide). Focus styles:

    ``faint_spots``, ``faint_on_texture``
        Most spots 0.3-2x the local powder level, FWHM 0.8-12 px, mostly on rings, on smooth
        or grainy textured rings, at every count level.
    ``negative_sharp``
        No spots; sharp rings (FWHM 1-1.5 px, pixel-limited), half of the time with strong
        preferred orientation (bands 10-100x, the ring between them at 0.05-0.5).
    ``negative_grainy``
        No spots; grainy, textured rings with arcs at low (10-300) or high (1e4-1e5) counts.
    """
    upd: dict[str, Any] = {}
    if rng.random() < 1.0 / 3.0:
        upd["noise"] = {"gain": 1.0, "read_noise": 0.0, "integer": True}
    if cfg.spots.count > 0:
        faint = style in ("faint_spots", "faint_on_texture")
        sp: dict[str, Any] = {}
        if faint or rng.random() < 0.25:
            sp["rel_brightness"] = (0.3, float(rng.uniform(1.0, 2.0)))
            sp["size_px"] = (float(rng.uniform(0.8, 1.5)), float(rng.uniform(4.0, 12.0)))
            sp["saturated_fraction"] = 0.0
            sp["extreme_fraction"] = 0.0
        if faint:
            sp["on_ring_fraction"] = float(rng.uniform(0.6, 0.95))
            sp["kinds"] = {"gaussian": 0.5, "lorentzian": 0.25, "streak": 0.15, "pair": 0.1}
            upd["flux"] = _lu(rng, 10.0, 1e5)
        if sp:
            upd["spots"] = sp
    if style == "negative_sharp":
        upd["ring_fwhm_deg"] = _lu(rng, 0.005, 0.02)
        upd["pixel_floor"] = float(rng.uniform(1.0, 1.5))
        if rng.random() < 0.5:
            upd["po"] = {"enabled": False}
        else:  # strong, narrow-based bands: crests far above the ring between them
            strength = _lu(rng, 10.0, 100.0)
            upd["po"] = {"strength": strength, "base": _lu(rng, 0.05, 0.5)}
            upd["detector"] = {"saturation": max(cfg.detector.saturation,
                                                 4.0 * cfg.flux * strength)}
    elif style == "negative_grainy":
        upd["flux"] = _lu(rng, 10.0, 300.0) if rng.random() < 0.5 else _lu(rng, 1e4, 1e5)
        upd["texture"] = {"amplitude": float(rng.uniform(0.6, 1.5)),
                          "correlation_deg": _lu(rng, 0.05, 1.0),
                          "arcs_per_ring": float(rng.uniform(0.5, 3.0))}
    return cfg.updated(**upd) if upd else cfg
