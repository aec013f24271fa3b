"""Crystalline phases for the simulator: reflections (d-spacings, Å) and relative intensities.

Two sources:

* pyFAI calibrants (``LaB6``, ``Si``, ``CeO2``, ``Al2O3`` = ``alpha_Al2O3`` and any other
  name pyFAI knows): d-spacings, multiplicities and, where tabulated, intensities from the
  calibrant's ``.D`` file.
* Unit cells computed here (``Ni``, ``Al``, ``Cu``, ``Fe``, ``NMC``, ``graphite``): every
  integer ``hkl`` is enumerated, lattice extinction rules applied (fcc, bcc, R-3m obverse,
  graphite's ``h-k=3n, l odd``), and equal d-spacings merged so that the multiplicity is the
  number of merged ``hkl``.

Intensities are multiplicity-weighted with a decay in ``s = 1/(2d)`` (Å⁻¹):
``I ∝ mult · exp(-B·s) / s²`` (a Lorentz-like ``1/s²`` times a stand-in for the form factor and
Debye-Waller factor, ``B`` fitted to Ni's 111/200/220/311 ratios); structure factors are not
modelled.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Decay of intensity with ``s = 1/(2d)``: ``I ∝ mult · exp(-DECAY_B_A · s) / s²``, Å.
DECAY_B_A = 6.3


@dataclass(frozen=True)
class Reflection:
    """One powder line of a phase.

    Attributes
    ----------
    d_angstrom
        Lattice-plane spacing, Å.
    multiplicity
        Number of ``hkl`` merged into the line.
    intensity
        Relative intensity (the phase's strongest line is 1).
    hkl
        A representative Miller index, or ``None`` when unknown.
    """

    d_angstrom: float
    multiplicity: int
    intensity: float
    hkl: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Phase:
    """A crystalline phase: its name and reflections sorted by decreasing d (Å)."""

    name: str
    reflections: tuple[Reflection, ...]
    source: str = ""

    def d_spacings_angstrom(self) -> np.ndarray:
        """The d-spacings of all reflections, Å, float64."""
        return np.array([r.d_angstrom for r in self.reflections], dtype=float)

    def intensities(self) -> np.ndarray:
        """The relative intensities of all reflections (max 1), float64."""
        return np.array([r.intensity for r in self.reflections], dtype=float)


def two_theta_deg(d_angstrom: float | np.ndarray, wavelength_angstrom: float) -> float | np.ndarray:
    """Bragg angle ``2θ = 2·asin(λ/2d)``, degrees (NaN where ``λ > 2d``).

    Parameters
    ----------
    d_angstrom
        d-spacing(s), Å.
    wavelength_angstrom
        Wavelength, Å.
    """
    ratio = wavelength_angstrom / (2.0 * np.asarray(d_angstrom, dtype=float))
    with np.errstate(invalid="ignore"):
        tth = np.degrees(2.0 * np.arcsin(np.where(ratio <= 1.0, ratio, np.nan)))
    return float(tth) if np.ndim(tth) == 0 else tth


def _decay(d_angstrom: np.ndarray) -> np.ndarray:
    s = 1.0 / (2.0 * np.asarray(d_angstrom, dtype=float))
    return np.exp(-DECAY_B_A * s) / (s * s)


# --- computed unit cells -----------------------------------------------------------------------


def _fcc(h: np.ndarray, k: np.ndarray, l: np.ndarray) -> np.ndarray:  # noqa: E741
    return ((h % 2) == (k % 2)) & ((k % 2) == (l % 2))


def _bcc(h: np.ndarray, k: np.ndarray, l: np.ndarray) -> np.ndarray:  # noqa: E741
    return ((h + k + l) % 2) == 0


def _r3m_obverse(h: np.ndarray, k: np.ndarray, l: np.ndarray) -> np.ndarray:  # noqa: E741
    return ((-h + k + l) % 3) == 0


def _graphite(h: np.ndarray, k: np.ndarray, l: np.ndarray) -> np.ndarray:  # noqa: E741
    # P6_3/mmc with C on 2b and 2c: F = 0 for h-k = 3n and l odd (001, 003, 111, ...).
    return ~((((h - k) % 3) == 0) & ((l % 2) == 1))


def _merge_lines(d: np.ndarray, hkl: np.ndarray, rel_tol: float = 1e-6) -> list[Reflection]:
    """Merge equal d-spacings; the multiplicity is the count of merged hkl."""
    order = np.argsort(-d, kind="stable")
    d, hkl = d[order], hkl[order]
    key = np.round(np.log(d) / rel_tol).astype(np.int64)
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    # np.unique sorts keys ascending (= d ascending); go back to decreasing d.
    first, counts = first[::-1], counts[::-1]
    lines: list[Reflection] = []
    for i, n in zip(first, counts, strict=True):
        # Representative index: the group's hkl with the most non-negative, largest entries.
        grp = hkl[i : i + n]
        rep = grp[np.lexsort((-grp[:, 2], -grp[:, 1], -grp[:, 0], (grp < 0).sum(axis=1)))[0]]
        lines.append(Reflection(float(d[i]), int(n), 1.0, (int(rep[0]), int(rep[1]),
                                                             int(rep[2]))))
    return lines


def _weighted(lines: list[Reflection]) -> tuple[Reflection, ...]:
    if not lines:
        return ()
    d = np.array([r.d_angstrom for r in lines])
    w = np.array([r.multiplicity for r in lines], dtype=float) * _decay(d)
    w /= w.max()
    return tuple(Reflection(r.d_angstrom, r.multiplicity, float(wi), r.hkl)
                 for r, wi in zip(lines, w, strict=True))


def cubic_reflections(
    a_angstrom: float, lattice: str, d_min_angstrom: float
) -> tuple[Reflection, ...]:
    """Reflections of a cubic cell down to ``d_min_angstrom``.

    Parameters
    ----------
    a_angstrom
        Cubic lattice parameter, Å.
    lattice
        ``"sc"``, ``"fcc"`` (h, k, l all even or all odd) or ``"bcc"`` (h+k+l even).
    d_min_angstrom
        Smallest d-spacing kept, Å.
    """
    rules: dict[str, Callable[..., np.ndarray] | None] = {"sc": None, "fcc": _fcc, "bcc": _bcc}
    if lattice not in rules:
        raise ValueError(f"unknown cubic lattice {lattice!r}; use one of {sorted(rules)}")
    n = int(math.floor(a_angstrom / d_min_angstrom))
    r = np.arange(-n, n + 1)
    h, k, l = (x.ravel() for x in np.meshgrid(r, r, r, indexing="ij"))  # noqa: E741
    q2 = (h * h + k * k + l * l).astype(float)
    keep = q2 > 0
    rule = rules[lattice]
    if rule is not None:
        keep &= rule(h, k, l)
    d = np.full(q2.shape, np.inf)
    d[keep] = a_angstrom / np.sqrt(q2[keep])
    keep &= d >= d_min_angstrom
    hkl = np.stack([h, k, l], axis=1)[keep]
    return _weighted(_merge_lines(d[keep], hkl))


def hexagonal_reflections(
    a_angstrom: float, c_angstrom: float, d_min_angstrom: float, rule: str | None = None
) -> tuple[Reflection, ...]:
    """Reflections of a hexagonal cell (hexagonal axes) down to ``d_min_angstrom``.

    Parameters
    ----------
    a_angstrom, c_angstrom
        Lattice parameters, Å.
    d_min_angstrom
        Smallest d-spacing kept, Å.
    rule
        Reflection condition: ``None`` (none), ``"R-3m"`` (obverse, ``-h+k+l = 3n``) or
        ``"graphite"`` (``h-k = 3n`` with ``l`` odd is absent).
    """
    rules: dict[str | None, Callable[..., np.ndarray] | None] = {
        None: None, "R-3m": _r3m_obverse, "graphite": _graphite}
    if rule not in rules:
        raise ValueError(f"unknown hexagonal rule {rule!r}; use None, 'R-3m' or 'graphite'")
    nh = int(math.floor(a_angstrom / d_min_angstrom * 2.0 / math.sqrt(3.0))) + 1
    nl = int(math.floor(c_angstrom / d_min_angstrom))
    rh, rl = np.arange(-nh, nh + 1), np.arange(-nl, nl + 1)
    h, k, l = (x.ravel() for x in np.meshgrid(rh, rh, rl, indexing="ij"))  # noqa: E741
    inv_d2 = 4.0 / 3.0 * (h * h + h * k + k * k) / a_angstrom**2 + (l * l) / c_angstrom**2
    keep = inv_d2 > 0
    fn = rules[rule]
    if fn is not None:
        keep &= fn(h, k, l)
    d = np.full(inv_d2.shape, np.inf)
    d[keep] = 1.0 / np.sqrt(inv_d2[keep])
    keep &= d >= d_min_angstrom
    hkl = np.stack([h, k, l], axis=1)[keep]
    return _weighted(_merge_lines(d[keep], hkl))


#: Phases computed from a unit cell: name -> (description, builder(d_min_angstrom)).
COMPUTED_PHASES: dict[str, tuple[str, Callable[[float], tuple[Reflection, ...]]]] = {
    "Ni": ("fcc a=3.524 Å", lambda dm: cubic_reflections(3.524, "fcc", dm)),
    "Al": ("fcc a=4.0495 Å", lambda dm: cubic_reflections(4.0495, "fcc", dm)),
    "Cu": ("fcc a=3.615 Å", lambda dm: cubic_reflections(3.615, "fcc", dm)),
    "Fe": ("bcc a=2.8665 Å", lambda dm: cubic_reflections(2.8665, "bcc", dm)),
    "NMC": ("R-3m layered oxide a=2.87 c=14.25 Å",
            lambda dm: hexagonal_reflections(2.87, 14.25, dm, "R-3m")),
    "graphite": ("P6_3/mmc a=2.464 c=6.711 Å",
                 lambda dm: hexagonal_reflections(2.464, 6.711, dm, "graphite")),
}

#: Short names for pyFAI calibrants.
CALIBRANT_ALIASES = {"Al2O3": "alpha_Al2O3", "corundum": "alpha_Al2O3"}

#: The calibrants the simulator is tested with (any pyFAI calibrant name also works).
CALIBRANT_PHASES = ("LaB6", "Si", "CeO2", "Al2O3")

_LINE = re.compile(
    r"^\s*([0-9.eE+-]+)\s*(?:#\s*\(([-\d\s]+)\)\s*(\d+)?\s*([0-9.eE+-]+)?)?"
)


def known_phases() -> tuple[str, ...]:
    """Names accepted by `get_phase` that are tested: computed cells and main calibrants."""
    return tuple(COMPUTED_PHASES) + CALIBRANT_PHASES


def _calibrant_lines(name: str) -> tuple[list[tuple[float, int, float | None, tuple | None]], str]:
    from pyFAI.calibrant import get_calibrant

    try:
        cal = get_calibrant(CALIBRANT_ALIASES.get(name, name))
    except Exception as exc:  # pyFAI raises KeyError or its own errors
        raise ValueError(
            f"unknown phase {name!r}: neither a computed cell {sorted(COMPUTED_PHASES)} nor a "
            f"pyFAI calibrant ({exc})"
        ) from exc
    rows: list[tuple[float, int, float | None, tuple | None]] = []
    path = None
    try:
        path = Path(cal._get_abs_path(cal.filename))  # noqa: SLF001 - only way to the .D file
    except Exception:  # pragma: no cover - pyFAI internals changed
        path = None
    if path is not None and path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.lstrip().startswith("#") or not line.strip():
                continue
            m = _LINE.match(line)
            if not m:
                continue
            d = float(m.group(1))
            hkl = tuple(int(x) for x in m.group(2).split()) if m.group(2) else None
            mult = int(m.group(3)) if m.group(3) else 1
            inten = float(m.group(4)) if m.group(4) else None
            rows.append((d, mult, inten, hkl if hkl and len(hkl) == 3 else None))
    if not rows:  # fall back to the public d-spacing list
        rows = [(float(d), 1, None, None) for d in cal.dspacing]
    return rows, f"pyFAI calibrant {cal.filename}"


@functools.lru_cache(maxsize=64)
def _phase_cached(name: str, d_min_key: int) -> Phase:
    d_min = d_min_key / 1000.0
    if name in COMPUTED_PHASES:
        desc, build = COMPUTED_PHASES[name]
        return Phase(name, build(d_min), desc)
    rows, src = _calibrant_lines(name)
    rows = [r for r in rows if r[0] >= d_min and (r[2] is None or r[2] > 0.0)]
    if not rows:
        return Phase(name, (), src)
    d = np.array([r[0] for r in rows])
    model = np.array([r[1] for r in rows], dtype=float) * _decay(d)
    tab = np.array([np.nan if r[2] is None else r[2] for r in rows])
    has = np.isfinite(tab)
    if has.any():
        # Tabulated intensities include structure factors; scale the model to join them.
        scale = float(np.median(tab[has] / model[has]))
        inten = np.where(has, tab, model * scale)
    else:
        inten = model
    inten = inten / inten.max()
    refl = tuple(Reflection(float(r[0]), int(r[1]), float(i), r[3])
                 for r, i in zip(rows, inten, strict=True))
    return Phase(name, refl, src)


def get_phase(name: str, d_min_angstrom: float = 0.5) -> Phase:
    """A phase's reflections with ``d ≥ d_min_angstrom``.

    Parameters
    ----------
    name
        A computed cell (``Ni``, ``Al``, ``Cu``, ``Fe``, ``NMC``, ``graphite``) or a pyFAI
        calibrant name (``LaB6``, ``Si``, ``CeO2``, ``Al2O3``/``alpha_Al2O3``, ...).
    d_min_angstrom
        Smallest d-spacing kept, Å (rounded down to 0.001 Å for caching).

    Raises
    ------
    ValueError
        If the name is neither a computed cell nor a pyFAI calibrant.
    """
    if d_min_angstrom <= 0:
        raise ValueError(f"d_min_angstrom must be positive, got {d_min_angstrom}")
    return _phase_cached(name, max(1, int(math.floor(d_min_angstrom * 1000.0))))
