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

from ..azimuthal import IntegrationSettings
from ..masking import Masker
from ..simulate.heldout import (
    FRAMES_FOR_EVERY_STYLE,
    NEGATIVE_STYLES,
    PRESET_STYLES,
    SEED_BASE,
    SETS,
    SHAPE_STYLES,
    TRANSFER_STYLES,
    Case,
    heldout_cases,
    simulate_case,
)
from ..training.frame_scores import (
    CLEAR_SPOT_SIGMA,
    EDGE_BINS_PX,
    ORACLE,
    clear_spot_ids,
    clear_spot_image,
    edge_bin_names,
    edge_spot_counts,
    peak_areas,
    po_area_error,
    score,
    score_frame,
    score_mask,
)

__all__ = ["CLEAR_SPOT_SIGMA", "EDGE_BINS_PX", "NEGATIVE_STYLES", "ORACLE", "PRESET_STYLES",
           "SEED_BASE", "SETS", "SHAPE_STYLES", "SPOTS_PCT_HEAD", "SPOTS_PCT_NOTE",
           "TRANSFER_STYLES", "Case", "Report", "clear_spot_ids", "clear_spot_image",
           "edge_bin_names", "edge_spot_counts", "evaluate", "heldout_cases", "peak_areas",
           "po_area_error", "score", "score_frame", "score_mask", "simulate_case",
           "write_report"]

#: "spots %" means one thing in every table (predict, demo, live demo, evaluation): the spot
#: pixels as a share of the pixels that are not static, so frames with wide module gaps or a
#: large detector mask compare with frames without. Text tables head the column with
#: `SPOTS_PCT_HEAD` and print `SPOTS_PCT_NOTE` under the table.
SPOTS_PCT_HEAD = "spots %*"
SPOTS_PCT_NOTE = ("* spots %: spot pixels as a share of the pixels that are not static "
                  "(module gaps, detector mask, flagged and NaN pixels)")


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


def evaluate(
    maskers: Mapping[str, Masker | str | None],
    *,
    size: int = 2880,
    frames_per_set: int = FRAMES_FOR_EVERY_STYLE,
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
