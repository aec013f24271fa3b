"""Render a labelled frame: powder + spots + detector defects + noise, and the ground truth.

Ground truth (`LabelRule`): a pixel is a spot pixel where the spots add a detectable excess
over the spot-free level ``L`` (counts): ``excess > 3σ`` or (``excess > 0.1·L`` and
``excess > 1σ``), ``σ = sqrt(gain·L + read_noise²)``; the result is dilated by 1 px and
static-masked pixels are removed. The 1σ floor keeps the 10 % branch from labelling
invisible tails on a near-empty background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .placement import Placed, place_spots
from .powder import RingInfo, render_powder
from .scene import SceneConfig
from .spots import render_in_box

_DILATE = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class SpotInfo:
    """One simulated spot.

    Attributes
    ----------
    spot_id
        Value of this spot in `SimulatedFrame.spot_ids` (1-based).
    row, col
        Centre, px.
    size_px
        FWHM, px (streak length, cluster extent).
    peak_counts
        Largest excess of the spot over the spot-free image, counts.
    kind
        ``gaussian``, ``lorentzian``, ``streak``, ``cluster`` or ``pair``.
    on_ring
        Placed on a powder ring.
    labelled_px
        Pixels labelled with this spot's id (0: below detectability or masked).
    """

    spot_id: int
    row: float
    col: float
    size_px: float
    peak_counts: float
    kind: str
    on_ring: bool
    labelled_px: int = 0


@dataclass(eq=False)
class SimulatedFrame:
    """A simulated detector frame with its ground truth.

    Attributes
    ----------
    image
        Counts, float32 ``(H, W)``: noise, spots, saturation; gaps read ``gap_value``,
        dead pixels ``dead_value``, hot pixels ``saturation``, the beamstop shadow is low.
    spot_free
        Noise-free expected counts without spots (powder + PO + texture + background), float32,
        without detector defects or beamstop shadow: the "true" pattern.
    labels
        bool ``(H, W)``, True = spot pixel.
    spot_ids
        int32 ``(H, W)``: 0 = no spot, k = pixels labelled for ``spots[k-1]``.
    static_mask
        bool ``(H, W)``, True = exclude (gaps, beamstop, dead and hot pixels).
    geometry
        The frame's `Geometry`.
    config
        The `SceneConfig` rendered.
    seed
        The seed used.
    spots
        One `SpotInfo` per spot.
    rings
        One `RingInfo` per rendered ring.
    """

    image: np.ndarray
    spot_free: np.ndarray
    labels: np.ndarray
    spot_ids: np.ndarray
    static_mask: np.ndarray
    geometry: Geometry
    config: SceneConfig
    seed: int
    spots: list[SpotInfo] = field(default_factory=list)
    rings: list[RingInfo] = field(default_factory=list)

    @property
    def n_detectable_spots(self) -> int:
        """Spots with at least one labelled pixel (the denominator of spot-level recall)."""
        return sum(1 for s in self.spots if s.labelled_px > 0)


def static_mask_and_values(config: SceneConfig, rng: np.random.Generator,
                           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Static mask (True = exclude) and the masks of each defect kind, bool ``shape``."""
    h, w = config.shape
    det = config.detector
    gaps = np.zeros((h, w), dtype=bool)
    if det.module_px is not None:
        mr, mc = det.module_px
        gr, gc = det.gap_px
        for start in range(mr, h, mr + gr):
            gaps[start:start + gr, :] = True
        for start in range(mc, w, mc + gc):
            gaps[:, start:start + gc] = True
    beamstop = np.zeros((h, w), dtype=bool)
    bs = det.beamstop
    if bs.enabled:
        cy, cx = config.center_px
        dy = np.arange(h, dtype=np.float32)[:, None] - np.float32(cy - 0.5)
        dx = np.arange(w, dtype=np.float32)[None, :] - np.float32(cx - 0.5)
        beamstop = dy * dy + dx * dx <= np.float32(bs.radius_px**2)
        if bs.arm_width_px > 0:
            a = math.radians(bs.arm_angle_deg)
            along = dx * np.float32(math.cos(a)) + dy * np.float32(math.sin(a))
            perp = np.abs(dy * np.float32(math.cos(a)) - dx * np.float32(math.sin(a)))
            beamstop |= (along >= 0) & (perp <= np.float32(bs.arm_width_px / 2.0))
    n = h * w
    dead = np.zeros(n, dtype=bool)
    hot = np.zeros(n, dtype=bool)
    if det.dead_fraction > 0:
        dead[rng.integers(0, n, int(round(det.dead_fraction * n)))] = True
    if det.hot_fraction > 0:
        hot[rng.integers(0, n, int(round(det.hot_fraction * n)))] = True
    dead, hot = dead.reshape(h, w) & ~gaps, hot.reshape(h, w) & ~gaps
    hot &= ~dead
    static = gaps | beamstop | dead | hot
    return static, {"gaps": gaps, "beamstop": beamstop, "dead": dead, "hot": hot}


def _add_beamstop_rim(config: SceneConfig, spot_free: np.ndarray, shadow: np.ndarray) -> None:
    """Add the beamstop's bright rim (`Beamstop.rim`) to the spot-free image, in place."""
    bs = config.detector.beamstop
    if not (bs.enabled and bs.rim > 0 and shadow.any()):
        return
    # distances only (no indices asked for): one array
    d = cast(np.ndarray, ndimage.distance_transform_edt(~shadow)).astype(np.float32)
    near = (d > 0) & (d < 6.0 * bs.rim_width_px)
    spot_free[near] += np.float32(bs.rim * config.flux) * np.exp(-d[near] / bs.rim_width_px)


def _render_spots(config: SceneConfig, placed: list[Placed], spot_free: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, list[tuple[slice, slice] | None],
                             list[float]]:
    """The spots' excess over the spot-free image (counts, float32), the owner of each pixel
    (the 1-based spot adding the most there), the box each spot was rendered in (None off the
    frame) and each spot's largest excess."""
    h, w = config.shape
    gain, read = config.noise.gain, config.noise.read_noise
    excess = np.zeros((h, w), dtype=np.float32)
    best = np.zeros((h, w), dtype=np.float32)
    owner = np.zeros((h, w), dtype=np.int32)
    boxes: list[tuple[slice, slice] | None] = []
    peaks: list[float] = []
    for k, p in enumerate(placed, start=1):
        lev = float(spot_free[min(max(int(p.row), 0), h - 1), min(max(int(p.col), 0), w - 1)])
        sig = math.sqrt(gain * max(lev, 0.0) + read * read)
        thr = max(0.2 * sig, 1e-4 * p.amp, 0.02)
        box = render_in_box(p.shape, p.row, p.col, p.shape.box_radius(p.amp / thr), (h, w))
        if box is None:
            boxes.append(None)
            peaks.append(0.0)
            continue
        rs, cs, patch = box
        contrib = patch * np.float32(p.amp)
        peaks.append(float(contrib.max()))
        excess[rs, cs] += contrib
        upd = contrib > best[rs, cs]
        best[rs, cs] = np.where(upd, contrib, best[rs, cs])
        owner[rs, cs] = np.where(upd, k, owner[rs, cs])
        boxes.append((rs, cs))
    return excess, owner, boxes, peaks


def _label_spots(config: SceneConfig, excess: np.ndarray, owner: np.ndarray,
                 spot_free: np.ndarray, static: np.ndarray,
                 boxes: list[tuple[slice, slice] | None]) -> np.ndarray:
    """Ground truth (`LabelRule`) in the spot boxes: detectable excess, then dilation per
    spot; int32 spot ids, 0 = no spot, never on static pixels."""
    h, w = config.shape
    gain, read = config.noise.gain, config.noise.read_noise
    rule = config.labels
    spot_ids = np.zeros((h, w), dtype=np.int32)
    for b in boxes:
        if b is None:
            continue
        ex, lev = excess[b], np.maximum(spot_free[b], 0.0)
        sig = np.sqrt(np.float32(gain) * lev + np.float32(read * read))
        core = (ex > rule.nsigma * sig) | ((ex > rule.rel * lev) & (ex > rule.min_nsigma * sig))
        core &= (ex > 0) & ~static[b]
        spot_ids[b] = np.where(core, owner[b], spot_ids[b])
    d = rule.dilate_px
    if d > 0:
        for k, b in enumerate(boxes, start=1):
            if b is None:
                continue
            rs = slice(max(b[0].start - d, 0), min(b[0].stop + d, h))
            cs = slice(max(b[1].start - d, 0), min(b[1].stop + d, w))
            mine = spot_ids[rs, cs] == k
            if not mine.any():
                continue
            grown = ndimage.binary_dilation(mine, _DILATE, iterations=d)
            sub = spot_ids[rs, cs]
            sub[grown & (sub == 0)] = k
    spot_ids[static] = 0
    return spot_ids


def _observe(config: SceneConfig, expected: np.ndarray, parts: dict[str, np.ndarray],
             rng: np.random.Generator) -> np.ndarray:
    """What the detector reads (float32 counts) for the ``expected`` counts (changed in
    place): beamstop shadow, Poisson and read noise, saturation, gap/dead/hot values."""
    det = config.detector
    gain, read = config.noise.gain, config.noise.read_noise
    bs = parts["beamstop"]
    if bs.any():
        expected[bs] *= np.float32(det.beamstop.transmission)
    np.maximum(expected, 0.0, out=expected)
    if config.noise.enabled:
        photons = rng.poisson(expected / gain)
        image = (photons * gain).astype(np.float32)
        if read > 0:
            image += rng.standard_normal(expected.shape, dtype=np.float32) * np.float32(read)
    else:
        image = expected.astype(np.float32, copy=True)
    if config.noise.integer:
        np.rint(image, out=image)
    np.minimum(image, np.float32(det.saturation), out=image)
    image[parts["gaps"]] = det.gap_value
    image[parts["dead"]] = det.dead_value
    image[parts["hot"]] = det.saturation
    return image


def simulate_frame(config: SceneConfig | str, *, seed: int = 0,
                   shape: tuple[int, int] | None = None) -> SimulatedFrame:
    """Render a labelled synthetic powder-XRD frame.

    Parameters
    ----------
    config
        A `SceneConfig`, or a preset name (``"rings_spots"``, ``"spots_po"``,
        ``"spots_texture"``, ``"perfect"``).
    seed
        Random seed; the same seed and config give identical arrays.
    shape
        Frame ``(rows, cols)`` px; when given, the scene is resampled with
        `SceneConfig.with_shape` (same detector area and 2θ range).

    Returns
    -------
    SimulatedFrame
        Image (counts), spot-free expectation, labels, spot ids, static mask and metadata.
    """
    if isinstance(config, str):
        from .presets import preset

        config = preset(config)
    if shape is not None:
        config = config.with_shape(shape)
    geo = config.geometry()
    ss = np.random.SeedSequence(int(seed))
    rng_scene, rng_static, rng_spots, rng_noise = (np.random.default_rng(s)
                                                   for s in ss.spawn(4))
    spot_free, rings = render_powder(config, geo, rng_scene)
    static, parts = static_mask_and_values(config, rng_static)
    _add_beamstop_rim(config, spot_free, parts["beamstop"])

    placed = place_spots(config, spot_free, static, rings, geo.tth_deg(), rng_spots,
                          parts["gaps"])
    excess, owner, boxes, peaks = _render_spots(config, placed, spot_free)
    spot_ids = _label_spots(config, excess, owner, spot_free, static, boxes)
    labels = spot_ids > 0
    image = _observe(config, spot_free + excess, parts, rng_noise)

    counts = np.bincount(spot_ids.ravel(), minlength=len(placed) + 1)
    spots = []
    for k, (p, peak) in enumerate(zip(placed, peaks, strict=True), start=1):
        spots.append(SpotInfo(k, float(p.row), float(p.col), float(p.shape.size_px),
                              peak, p.kind, p.on_ring, int(counts[k])))
    return SimulatedFrame(image=image, spot_free=spot_free, labels=labels, spot_ids=spot_ids,
                          static_mask=static, geometry=geo, config=config, seed=int(seed),
                          spots=spots, rings=rings)
