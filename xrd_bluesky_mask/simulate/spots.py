"""Single-crystal spot shapes, evaluated in a small box around the spot (px).

Each shape is a callable profile ``f(dy, dx)`` of offsets from its (sub-pixel) centre in
pixels with a peak of about 1, plus `SpotShape.radius`, the distance beyond which
``amplitude·f`` falls below a threshold, so a spot is rendered only in the box that matters.
Pixel integration is approximated by adding a 1/12 px² variance to the Gaussian widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_PIXEL_VAR = 1.0 / 12.0
MAX_RADIUS_PX = 48.0


def _gauss_reach(sigma: float, ratio: float) -> float:
    return sigma * math.sqrt(2.0 * math.log(max(ratio, 1.0 + 1e-9)))


@dataclass(frozen=True)
class SpotShape:
    """Base: a peak-normalised profile with a size (FWHM, px).

    ``reach_px`` caps the render box's half-size (px): heavy-tailed wings and long streaks
    need more than the default `MAX_RADIUS_PX`.
    """

    kind: str
    size_px: float
    reach_px: float = MAX_RADIUS_PX

    def evaluate(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Profile at offsets ``(dy, dx)`` px from the centre, peak ≈ 1, float32."""
        raise NotImplementedError

    def radius(self, ratio: float) -> float:  # pragma: no cover
        """Distance (px) where the profile falls to ``1/ratio`` of its peak."""
        raise NotImplementedError

    def box_radius(self, ratio: float) -> int:
        """Half-size (px) of the render box for a peak ``ratio`` × the cut-off level."""
        return int(math.ceil(min(max(self.radius(ratio), 2.0), self.reach_px))) + 1

    def taper_start(self) -> float:
        """Distance (px) from the centre where the render box's taper to zero begins."""
        return 0.0


@dataclass(frozen=True)
class Gaussian(SpotShape):
    """Compact elliptical Gaussian (FWHM ``size_px`` along its major axis)."""

    aspect: float = 1.0
    angle_rad: float = 0.0

    def _sigmas(self) -> tuple[float, float]:
        s = self.size_px * FWHM_TO_SIGMA
        return math.sqrt(s * s + _PIXEL_VAR), math.sqrt((s * self.aspect) ** 2 + _PIXEL_VAR)

    def evaluate(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        sa, sb = self._sigmas()
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        return np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2)).astype(np.float32)

    def radius(self, ratio: float) -> float:
        return _gauss_reach(max(self._sigmas()), ratio)


@dataclass(frozen=True)
class Moffat(SpotShape):
    """Heavy-tailed (Lorentzian-like) spot ``(1 + r²/γ²)^-β`` with FWHM ``size_px``."""

    beta: float = 1.5

    def _gamma(self) -> float:
        fw = math.sqrt(self.size_px**2 + 8.0 * math.log(2.0) * _PIXEL_VAR)
        return fw / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def evaluate(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        g = self._gamma()
        return ((1.0 + (dy * dy + dx * dx) / (g * g)) ** (-self.beta)).astype(np.float32)

    def radius(self, ratio: float) -> float:
        return self._gamma() * math.sqrt(max(ratio, 1.0) ** (1.0 / self.beta) - 1.0)


@dataclass(frozen=True)
class Streak(SpotShape):
    """Elongated streak: a line segment (FWHM length ``size_px``) blurred by ``width_px``.

    ``taper`` (0-1) dims the segment towards its ends (``1 - taper·(u/a)²`` along it), as
    real streaks fade; ``full_length`` keeps the render box's taper off the segment itself
    (long streaks; the short ones of the first simulator keep their old profile).
    """

    width_px: float = 0.8
    angle_rad: float = 0.0
    taper: float = 0.0
    full_length: bool = False

    def _half_len(self) -> float:
        return max(0.5 * self.size_px - 1.1774 * self._sw(), 0.0)

    def _sw(self) -> float:
        return math.sqrt(self.width_px**2 + _PIXEL_VAR)

    def evaluate(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        a = self._half_len()
        du = np.maximum(np.abs(u) - a, 0.0)
        sw = self._sw()
        out = np.exp(-0.5 * (du * du + v * v) / (sw * sw))
        if self.taper > 0 and a > 0:
            out *= 1.0 - self.taper * np.minimum(np.abs(u) / a, 1.0) ** 2
        return out.astype(np.float32)

    def radius(self, ratio: float) -> float:
        return self._half_len() + _gauss_reach(self._sw(), ratio)

    def taper_start(self) -> float:
        return self._half_len() if self.full_length else 0.0


@dataclass(frozen=True)
class Cluster(SpotShape):
    """A few small Gaussians (crystallite cluster) within ``size_px``; max normalised to 1."""

    offsets: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    sigmas: tuple[float, ...] = (1.0,)
    amps: tuple[float, ...] = (1.0,)

    def _raw(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(np.shape(dy), np.shape(dx)), dtype=np.float32)
        for (oy, ox), sg, a in zip(self.offsets, self.sigmas, self.amps, strict=True):
            s2 = sg * sg + _PIXEL_VAR
            out += np.float32(a) * np.exp(-0.5 * ((dy - oy) ** 2 + (dx - ox) ** 2) / s2)
        return out

    def evaluate(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        # Normalise by the continuous maximum, approximated at the component centres.
        cy = np.array([o[0] for o in self.offsets], dtype=np.float32)
        cx = np.array([o[1] for o in self.offsets], dtype=np.float32)
        peak = float(self._raw(cy, cx).max())
        return self._raw(dy, dx) / np.float32(max(peak, 1e-12))

    def radius(self, ratio: float) -> float:
        spread = max(math.hypot(oy, ox) for oy, ox in self.offsets)
        s = math.sqrt(max(self.sigmas) ** 2 + _PIXEL_VAR)
        return spread + _gauss_reach(s, ratio)


def draw_shape(kind: str, size_px: float, rng: np.random.Generator,
               angle_deg: float | None = None, aspect: float | None = None,
               *, moffat_beta: tuple[float, float] = (1.2, 2.5),
               reach_px: float = MAX_RADIUS_PX, streak_taper: float = 0.0) -> SpotShape:
    """Draw the random parameters of a spot shape.

    Parameters
    ----------
    kind
        ``"gaussian"``, ``"lorentzian"``, ``"streak"``, ``"cluster"`` (``"pair"`` members
        use ``"gaussian"`` or ``"lorentzian"``).
    size_px
        FWHM, px (major axis for streaks; overall extent for clusters).
    rng
        Random generator.
    angle_deg
        Orientation, degrees; random when ``None``.
    aspect
        Minor/major ratio of a Gaussian; random in [0.6, 1] when ``None``.
    moffat_beta
        Range of the Moffat exponent of ``"lorentzian"`` spots (smaller = heavier wings).
    reach_px
        Largest render half-size, px (`SpotShape.reach_px`).
    streak_taper
        Largest end taper of a streak (drawn uniformly in ``[0, streak_taper]``).
    """
    ang = math.radians(angle_deg) if angle_deg is not None else rng.uniform(0.0, math.pi)
    if kind == "gaussian":
        asp = float(rng.uniform(0.6, 1.0)) if aspect is None else aspect
        return Gaussian(kind, size_px, reach_px, aspect=asp, angle_rad=ang)
    if kind == "extreme":
        return Gaussian(kind, size_px, reach_px, aspect=1.0, angle_rad=0.0)
    if kind == "lorentzian":
        return Moffat(kind, size_px, reach_px, beta=float(rng.uniform(*moffat_beta)))
    if kind == "streak":
        length = max(size_px, 2.5)
        taper = float(rng.uniform(0.0, streak_taper)) if streak_taper > 0 else 0.0
        long = length > 15.0
        return Streak(kind, length, max(reach_px, length / 2 + 16.0) if long else reach_px,
                      width_px=float(rng.uniform(0.4, 1.3)), angle_rad=ang, taper=taper,
                      full_length=long)
    if kind == "cluster":
        n = int(rng.integers(2, 6))
        spread = max(size_px, 2.0) / 2.0
        r = spread * np.sqrt(rng.uniform(0.0, 1.0, n))
        t = rng.uniform(0.0, 2.0 * math.pi, n)
        offs = tuple((float(ri * math.sin(ti)), float(ri * math.cos(ti)))
                     for ri, ti in zip(r, t, strict=True))
        sig = tuple(float(x) for x in rng.uniform(0.4, max(0.5, 0.35 * spread), n))
        amps = tuple(float(x) for x in rng.uniform(0.3, 1.0, n))
        return Cluster(kind, size_px, reach_px, offsets=offs, sigmas=sig, amps=amps)
    raise ValueError(f"unknown spot kind {kind!r}; use gaussian, lorentzian, streak, cluster "
                     "or extreme")


def render_in_box(shape: SpotShape, row: float, col: float, half: int,
                  frame_shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray] | None:
    """Evaluate ``shape`` centred at ``(row, col)`` px in a box of half-size ``half`` px,
    tapered smoothly to zero between `SpotShape.taper_start` and ``half`` px from the centre
    (PSF tails end there).

    Returns the row/col slices of the frame and the profile patch (float32), clipped to the
    frame; ``None`` when the box lies outside the frame.
    """
    r0 = max(int(math.floor(row)) - half, 0)
    r1 = min(int(math.floor(row)) + half + 2, frame_shape[0])
    c0 = max(int(math.floor(col)) - half, 0)
    c1 = min(int(math.floor(col)) + half + 2, frame_shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    dy = (np.arange(r0, r1, dtype=np.float32) - np.float32(row))[:, None]
    dx = (np.arange(c0, c1, dtype=np.float32) - np.float32(col))[None, :]
    # a smooth circular taper to 0 at the box edge: tails end inside the box, so no profile
    # (and no label) ever shows the box's square outline
    inner = min(shape.taper_start(), 0.75 * half)
    if inner > 0:
        r = np.maximum(np.sqrt(dy * dy + dx * dx) - np.float32(inner), 0.0)
        taper = np.clip(1.0 - (r / np.float32(half - inner)) ** 2, 0.0, None) ** 2
    else:
        taper = np.clip(1.0 - (dy * dy + dx * dx) / np.float32(half * half), 0.0, None) ** 2
    return slice(r0, r1), slice(c0, c1), shape.evaluate(dy, dx) * taper
