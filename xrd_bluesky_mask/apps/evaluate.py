"""`xrd-mask evaluate`: maskers scored on held-out simulated frames against the ground truth.

Two held-out sets, simulated at full size with seeds no training run uses:

``presets``
    The four scene presets (Varex-like 2880x2880 geometry): spots on smooth rings, spots with
    strong preferred orientation (PO), spots on grainy textured rings, perfect rings.
``transfer``
    Broadly random scenes (geometry, wavelength, spot shapes, flux) made only of the phases
    training never sees (`~xrd_bluesky_mask.simulate.presets.HELD_OUT_PHASES`), including
    spot-free frames with strong PO: a transfer test like the paper's unseen dataset.
``shapes``
    The hard cases, each scene focused on one (``random_scene(scenes="v3")`` focus styles, the
    held-out phases, seeds no training uses): long streaks along and across the rings, heavy
    Lorentzian wings, spots at edges, corners and gaps, extreme sub-pixel spots on sharp rings,
    and spot-free grainy rings (nothing should be masked there).
``negatives``
    Spot-free frames unlike the training scenes, where nothing may be masked (held-out
    phases): sharp rings (FWHM 1-1.5 px) in float32 and in integer counts, strong preferred
    orientation (bands 30-100x) on sharp rings, and grainy, textured rings at high
    (1e4-1e5) and low (10-300) counts. The release gate (`release_gate`) reads the worst
    frame of each group.

Per frame and masker: pixel recall, true-negative rate (TNR), precision, false-positive pixels,
spot-level recall (a spot is found when ≥ 50 % of its pixels are masked), also by the spot
centre's distance to the nearest frame edge (`EDGE_BINS_PX`), the masked fraction,
Rwp of the masked pattern against the pattern of the spot-free image, and, on PO frames, the
median relative error of the PO rings' peak areas. ``none`` (static mask only) is the floor;
``ORACLE`` (the ground-truth labels as the mask) is the ceiling: its Rwp is the frame's noise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..azimuthal import IntegrationSettings, integrate
from ..masking import Masker, get_masker
from ..masking.preprocess import prepare_frame
from ..metrics import pixel_metrics, rwp, spot_counts, spot_found

SEED_BASE = 1_000_000  #: held-out seeds start here; training uses seeds below it
TRANSFER_STYLES = ("rings_spots", "spots_po", "spots_texture", "negative_po")
PRESET_STYLES = ("rings_spots", "spots_po", "spots_texture", "perfect")
SHAPE_STYLES = ("streaks", "heavy_tails", "edges", "extreme_pixels", "negative_texture")
NEGATIVE_STYLES = ("sharp_rings", "sharp_rings_int", "po_sharp", "grainy_high", "grainy_low")
SETS = ("presets", "transfer", "shapes", "negatives")
#: Upper bounds (px) of the bins of a spot centre's distance to the nearest frame edge.
EDGE_BINS_PX = (16, 64, 256)
_SEED_OFFSET = {"presets": 0, "transfer": 500, "shapes": 1000, "negatives": 1500}
#: "spots %" means one thing in every table (predict, demo, live demo, evaluation): the spot
#: pixels as a share of the pixels that are not static, so frames with wide module gaps or a
#: large detector mask compare with frames without. Text tables head the column with
#: `SPOTS_PCT_HEAD` and print `SPOTS_PCT_NOTE` under the table.
SPOTS_PCT_HEAD = "spots %*"
SPOTS_PCT_NOTE = ("* spots %: spot pixels as a share of the pixels that are not static "
                  "(module gaps, detector mask, flagged and NaN pixels)")
_STYLES = {"presets": PRESET_STYLES, "transfer": TRANSFER_STYLES, "shapes": SHAPE_STYLES,
           "negatives": NEGATIVE_STYLES}


@dataclass
class Case:
    """One held-out frame to simulate."""

    set_name: str
    style: str
    seed: int


def heldout_cases(frames_per_set: int = 4, sets: tuple[str, ...] = SETS) -> list[Case]:
    """The held-out frames: ``frames_per_set`` of each of ``sets``, styles cycled."""
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown held-out sets {sorted(unknown)}; choose from {SETS}")
    cases = [Case(name, _STYLES[name][i % len(_STYLES[name])],
                  SEED_BASE + _SEED_OFFSET[name] + i)
             for name in sets for i in range(frames_per_set)]
    return sorted(cases, key=lambda c: (c.set_name, c.seed))


def simulate_case(case: Case, size: int):
    """Render a held-out case at ``size`` x ``size`` px."""
    from ..simulate import preset, random_scene, simulate_frame
    from ..simulate.presets import HELD_OUT_PHASES

    if case.set_name == "presets":
        cfg = preset(case.style).with_shape((size, size))
    elif case.set_name == "negatives":
        cfg = _negative_scene(case, size)
    else:
        rng = np.random.default_rng(case.seed)
        cfg = random_scene(rng, shape=(size, size), preset=case.style,
                           phase_pool=HELD_OUT_PHASES,
                           scenes="v3" if case.set_name == "shapes" else "v2")
    return simulate_frame(cfg, seed=case.seed)


def _negative_scene(case: Case, size: int):
    """The spot-free scene of a ``negatives`` case (see the module docstring)."""
    from ..simulate import random_scene
    from ..simulate.presets import HELD_OUT_PHASES

    rng = np.random.default_rng(case.seed)
    base = "negative_grainy" if case.style.startswith("grainy") else "negative_sharp"
    cfg = random_scene(rng, shape=(size, size), preset=base, phase_pool=HELD_OUT_PHASES,
                       scenes="v4")
    integer = {"gain": 1.0, "read_noise": 0.0, "integer": True}
    upd: dict[str, Any] = {
        "sharp_rings": {"po": {"enabled": False}, "noise": {"integer": False}},
        "sharp_rings_int": {"po": {"enabled": False}, "noise": integer},
        "po_sharp": {"po": {"enabled": True, "strength": float(rng.uniform(30.0, 100.0)),
                            "base": float(rng.uniform(0.05, 0.3)),
                            "width_deg": float(rng.uniform(5.0, 30.0))},
                     "noise": {"integer": False}},
        "grainy_high": {"flux": float(rng.uniform(1e4, 1e5))},
        "grainy_low": {"flux": float(rng.uniform(10.0, 300.0))},
    }[case.style]
    if case.style == "po_sharp":
        strength = upd["po"]["strength"]
        upd["detector"] = {"saturation": max(cfg.detector.saturation,
                                             4.0 * cfg.flux * strength)}
    return cfg.updated(**upd).model_copy(update={"name": case.style})


def peak_areas(pattern: xr.DataArray, rings: list, *, half_width_fwhm: float = 1.5) -> np.ndarray:
    """Integrated area of each ring's peak above a linear baseline through the window edges."""
    tth = pattern["two_theta"].values
    y = pattern.values
    areas = []
    for ring in rings:
        half = half_width_fwhm * ring.fwhm_deg
        lo, hi = ring.tth_deg - half, ring.tth_deg + half
        sel = (tth >= lo) & (tth <= hi) & np.isfinite(y)
        if sel.sum() < 3:
            areas.append(np.nan)
            continue
        x, v = tth[sel], y[sel]
        base = np.interp(x, [x[0], x[-1]], [v[0], v[-1]])
        areas.append(float(np.trapezoid(v - base, x)))
    return np.asarray(areas)


def po_area_error(pattern: xr.DataArray, truth: xr.DataArray, sim, n_rings: int = 6) -> float:
    """Median |area - true area| / true area over the strongest PO rings (NaN without PO)."""
    if not sim.config.po.enabled or not sim.rings:
        return float("nan")
    true = peak_areas(truth, sim.rings)
    ok = np.isfinite(true) & (true > 0)
    if not ok.any():
        return float("nan")
    idx = np.argsort(np.where(ok, true, -np.inf))[::-1][: min(n_rings, int(ok.sum()))]
    got = peak_areas(pattern, [sim.rings[i] for i in idx])
    err = np.abs(got - true[idx]) / true[idx]
    # NaN when every PO ring's window lost its points in the masked pattern
    return float(np.nanmedian(err)) if np.isfinite(err).any() else float("nan")


@dataclass
class Report:
    """Per-frame rows and the summary tables."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{group: {masker: metrics}}`` for each scene style, each set and ``overall``.

        Pixel recall/TNR/precision pool the pixels of all frames of a group; spot recall pools
        the spots; Rwp and false-positive pixels are means over frames; the PO area error is the
        median over frames that have PO.
        """
        groups: dict[str, list[dict]] = {}
        for r in self.rows:
            for g in (f"{r['set']}/{r['style']}", r["set"], "overall"):
                groups.setdefault(g, []).append(r)
        out: dict[str, dict[str, dict[str, float]]] = {}
        for g, rows in groups.items():
            out[g] = {}
            for name in rows[0]["maskers"]:
                ms = [r["maskers"][name] for r in rows]
                tp, fp = sum(m["tp"] for m in ms), sum(m["fp"] for m in ms)
                fn, tn = sum(m["fn"] for m in ms), sum(m["tn"] for m in ms)
                found, spots = sum(m["spots_found"] for m in ms), sum(m["spots"] for m in ms)
                cfound = sum(m.get("clear_spots_found", 0) for m in ms)
                cspots = sum(m.get("clear_spots", 0) for m in ms)
                po = [m["po_area_error"] for m in ms if np.isfinite(m["po_area_error"])]
                edge = {}
                for b in edge_bin_names():
                    hit = sum(m.get("edge_spots", {}).get(b, (0, 0))[0] for m in ms)
                    n = sum(m.get("edge_spots", {}).get(b, (0, 0))[1] for m in ms)
                    edge[f"spot_recall_edge_{b}"] = hit / n if n else float("nan")
                out[g][name] = {
                    "frames": len(ms),
                    "recall": tp / (tp + fn) if tp + fn else float("nan"),
                    "tnr": tn / (tn + fp) if tn + fp else float("nan"),
                    "precision": tp / (tp + fp) if tp + fp else float("nan"),
                    "fp_per_frame": fp / len(ms),
                    "masked_pct": float(np.mean([m["masked_pct"] for m in ms])),
                    "worst_masked_pct": float(np.max([m["masked_pct"] for m in ms])),
                    "worst_rwp": float(np.nanmax([m["rwp"] for m in ms]))
                    if np.isfinite([m["rwp"] for m in ms]).any() else float("nan"),
                    "spot_recall": found / spots if spots else float("nan"),
                    "clear_spot_recall": cfound / cspots if cspots else float("nan"),
                    "rwp": float(np.nanmean([m["rwp"] for m in ms])),
                    "po_area_error": float(np.median(po)) if po else float("nan"),
                    **edge,
                }
        return out

    def markdown(self) -> str:
        """The summary as a Markdown table."""
        cols = ["recall", "tnr", "precision", "fp_per_frame", "spot_recall", "clear_spot_recall",
                "masked_pct", "worst_masked_pct", "rwp", "worst_rwp", "po_area_error"]
        heads = ["pixel recall", "TNR", "precision", "FP px/frame", "spot recall",
                 f"spot recall (≥{CLEAR_SPOT_SIGMA:.0f}σ)", "spots % of non-static px",
                 "worst frame %", "Rwp", "worst Rwp", "PO area err"]
        fmt = {"tnr": ".5f", "fp_per_frame": ".0f", "masked_pct": ".3f",
               "worst_masked_pct": ".3f", "rwp": ".4f", "worst_rwp": ".4f"}
        lines = ["| group | masker | frames | " + " | ".join(heads) + " |",
                 "|---|---|---:|" + "---:|" * len(cols)]
        for g, by in self.summary().items():
            for name, m in by.items():
                cells = []
                for c in cols:
                    v = m[c]
                    cells.append("–" if not np.isfinite(v) else format(v, fmt.get(c, ".3f")))
                lines.append(f"| {g} | {name} | {m['frames']} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def edge_markdown(self) -> str:
        """Spot recall by the spot centre's distance to the nearest frame edge (all frames)."""
        overall = self.summary().get("overall", {})
        bins = edge_bin_names()
        lines = ["| masker | " + " | ".join(f"{b} px" for b in bins) + " |",
                 "|---|" + "---:|" * len(bins)]
        for name, m in overall.items():
            cells = [m[f"spot_recall_edge_{b}"] for b in bins]
            lines.append(f"| {name} | " + " | ".join(
                "–" if not np.isfinite(v) else f"{v:.3f}" for v in cells) + " |")
        return "\n".join(lines)


#: Pass as a masker to score the ground-truth labels themselves (the best any masker can do).
ORACLE = "oracle"

#: A spot is "clear" when its peak excess is at least this many noise σ of its background.
CLEAR_SPOT_SIGMA = 10.0


def edge_bin_names() -> list[str]:
    """Names of the distance-to-edge bins: ``"0-16"``, ``"16-64"``, ``"64-256"``, ``">256"``."""
    lo = (0, *EDGE_BINS_PX)
    return [f"{a}-{b}" for a, b in zip(lo, EDGE_BINS_PX, strict=False)] + [
        f">{EDGE_BINS_PX[-1]}"]


def edge_spot_counts(sim, found: Mapping[int, bool]) -> dict[str, tuple[int, int]]:
    """``{bin: (found, total)}`` of the labelled spots by their centre's distance (px) to the
    nearest frame edge; ``found`` is `metrics.spot_found` of the mask (spot id → found)."""
    rows, cols = sim.spot_ids.shape
    names = edge_bin_names()
    out = {b: [0, 0] for b in names}
    for sp in sim.spots:
        if sp.spot_id not in found:
            continue
        d = min(sp.row, sp.col, rows - 1 - sp.row, cols - 1 - sp.col)
        b = names[int(np.searchsorted(EDGE_BINS_PX, max(d, 0.0), side="right"))]
        out[b][0] += int(found[sp.spot_id])
        out[b][1] += 1
    return {b: (f, n) for b, (f, n) in out.items()}


def clear_spot_ids(sim, nsigma: float = CLEAR_SPOT_SIGMA) -> np.ndarray:
    """Ids of the spots whose peak excess is ≥ ``nsigma`` σ of the spot-free level at their
    centre (σ = sqrt(gain·level + read_noise²)): spots a person sees at once. The labels also
    hold spots barely above the noise (3σ rule), which no masker can find reliably."""
    noise = sim.config.noise
    rows, cols = sim.spot_free.shape
    ids = []
    for sp in sim.spots:
        r = min(max(int(round(sp.row)), 0), rows - 1)
        c = min(max(int(round(sp.col)), 0), cols - 1)
        level = max(float(sim.spot_free[r, c]), 0.0)
        sigma = np.sqrt(noise.gain * level + noise.read_noise**2)
        if sp.peak_counts >= nsigma * max(sigma, 1e-6):
            ids.append(sp.spot_id)
    return np.asarray(ids, dtype=np.int32)


def clear_spot_image(sim) -> np.ndarray:
    """``sim.spot_ids`` with every spot that is not clear (`clear_spot_ids`) set to 0."""
    return np.where(np.isin(sim.spot_ids, clear_spot_ids(sim)), sim.spot_ids, 0)


def score(sim, masker: Masker | str | None, truth: xr.DataArray,
          settings: IntegrationSettings | None, *,
          clear_ids: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of one masker (None = static mask only, `ORACLE` = the labels) on one frame.

    ``clear_ids``: the frame's spot-id image restricted to `clear_spot_ids` (computed when None;
    pass it to score several maskers on one frame without recomputing it)."""
    geo = sim.geometry
    if masker is None or masker == ORACLE:
        _, static = prepare_frame(sim.image, geo, extra_static=sim.static_mask)
        spots = sim.labels & ~static if masker == ORACLE else np.zeros_like(static)
    else:
        chosen = get_masker(masker) if isinstance(masker, str) else masker
        res = chosen.predict(sim.image, geo, extra_static=sim.static_mask)
        spots, static = res.spots, res.static
    pattern = integrate(sim.image, geo, mask=spots | static, settings=settings)
    return score_mask(sim, spots, static, pattern, truth, clear_ids=clear_ids)


def score_mask(sim, spots: np.ndarray, static: np.ndarray, pattern: xr.DataArray,
               truth: xr.DataArray, *, clear_ids: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of a mask already made (bool ``spots`` and ``static`` ``(rows, cols)``) and of
    its masked ``pattern`` against the simulator's ground truth; see `score`."""
    valid = ~static
    pm = pixel_metrics(spots, sim.labels, valid)
    found = spot_found(spots, sim.spot_ids, valid)
    if clear_ids is None:
        clear_ids = clear_spot_image(sim)
    found_clear, total_clear = spot_counts(spots, clear_ids, valid)
    return {
        **{k: pm[k] for k in ("tp", "fp", "fn", "tn")},
        "masked_pct": 100.0 * float(spots[valid].mean()),  # see SPOTS_PCT_NOTE
        "spots": len(found),
        "spots_found": sum(found.values()),
        "clear_spots": total_clear,
        "clear_spots_found": found_clear,
        "rwp": rwp(pattern, truth),
        "po_area_error": po_area_error(pattern, truth, sim),
        "edge_spots": edge_spot_counts(sim, found),
    }


def evaluate(
    maskers: Mapping[str, Masker | str | None],
    *,
    size: int = 2880,
    frames_per_set: int = 4,
    settings: IntegrationSettings | None = None,
    progress: bool = True,
    sets: tuple[str, ...] = SETS,
) -> Report:
    """Score each masker (None = no mask, `ORACLE` = the labels) on the held-out frames of
    ``sets``, ``size`` x ``size`` px."""
    from ..progress import progress as tqdm

    report = Report()
    for case in tqdm(heldout_cases(frames_per_set, sets), desc="evaluating", unit="frame",
                     disable=not progress):
        sim = simulate_case(case, size)
        report.rows.append({"set": case.set_name, "style": case.style, "seed": case.seed,
                            "size_px": size, "maskers": score_frame(sim, maskers, settings)})
    return report


def score_frame(sim, maskers: Mapping[str, Masker | str | None],
                settings: IntegrationSettings | None = None) -> dict[str, dict[str, Any]]:
    """Metrics (`score`) of each masker on one simulated frame, ``{name: metrics}``: the row
    `evaluate` stores per frame under ``"maskers"``, for frames of any scene."""
    _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    truth = integrate(sim.spot_free, sim.geometry, mask=static, settings=settings)
    clear = clear_spot_image(sim)
    return {name: score(sim, m, truth, settings, clear_ids=clear) for name, m in maskers.items()}


def write_report(report: Report, out_dir: str | Path, extra: Mapping[str, Any]) -> Path:
    """Write ``evaluation.md`` and ``evaluation.json`` (rows + summary + ``extra``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.md").write_text(
        report.markdown() + "\n\nSpot recall by distance of the spot's centre to the nearest "
        "frame edge:\n\n" + report.edge_markdown() + "\n")
    data = {**extra, "summary": report.summary(), "rows": report.rows}
    (out / "evaluation.json").write_text(json.dumps(data, indent=1, default=float))
    return out
