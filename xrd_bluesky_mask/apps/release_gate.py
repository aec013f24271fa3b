"""The release gate of a default model: what it must never do comes before what it finds.

A candidate model's ``xrd-mask evaluate`` result is held against the current default's, on the
same held-out frames, group by group (``set/style``, each set, ``overall``):

Specificity (every group; a candidate is refused if any figure is worse)
    TNR, Rwp and the worst frame's Rwp, the preferred-orientation peak-area error, and on
    spot-free groups (no labelled spot) the masked share, mean and worst frame.
Recall (``overall``; the candidate must be better on one and worse on none)
    Pixel recall and spot recall.

Figures missing on either side (NaN: a group without PO, a spot-free group's recall) are not
compared. Every group of each set the evaluations hold must have a frame on both sides (one
frame of every style: ``--frames-per-set`` at least the number of styles of the largest set):
a gate that never saw the grainy spot-free frames cannot say the candidate leaves them alone.
"Worse" allows a relative slack of `SLACK` for float noise only: the frames are the
same, so the figures of one model are reproducible.

The absolute targets of the spot-free frames (`TARGETS`) are reported beside the gate, so a
candidate that is better than the default but still short of them says by how much.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Relative slack of "no worse" (float noise, not measurement noise: the frames are the same).
SLACK = 1e-6

#: Specificity figures: name in the summary, label, whether higher is better, spot-free only.
SPECIFICITY: tuple[tuple[str, str, bool, bool], ...] = (
    ("tnr", "TNR", True, False),
    ("rwp", "Rwp", False, False),
    ("worst_rwp", "worst frame Rwp", False, False),
    ("po_area_error", "PO peak-area error", False, False),
    ("masked_pct", "masked % (spot-free)", False, True),
    ("worst_masked_pct", "worst frame masked % (spot-free)", False, True),
)
#: Recall figures, compared on ``overall``.
RECALL: tuple[tuple[str, str], ...] = (("recall", "pixel recall"), ("spot_recall", "spot recall"))
#: Absolute targets: (figure, limit), the figure at or below the limit in every group: the
#: worst frame's masked share of the spot-free groups (%), the PO peak-area error (fraction).
TARGETS: tuple[tuple[str, float], ...] = (("worst_masked_pct", 0.05), ("po_area_error", 0.01))


@dataclass(frozen=True)
class Check:
    """One figure of one group, candidate against baseline."""

    group: str
    figure: str
    label: str
    baseline: float
    candidate: float
    kind: str  # "specificity" or "recall"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "recall" or any(
            name == self.figure and higher for name, _, higher, _ in SPECIFICITY)

    @property
    def worse(self) -> bool:
        slack = SLACK * max(abs(self.baseline), 1e-12)
        if self.higher_is_better:
            return self.candidate < self.baseline - slack
        return self.candidate > self.baseline + slack

    @property
    def better(self) -> bool:
        slack = SLACK * max(abs(self.baseline), 1e-12)
        if self.higher_is_better:
            return self.candidate > self.baseline + slack
        return self.candidate < self.baseline - slack


@dataclass(frozen=True)
class GateResult:
    """All checks, and the verdict."""

    checks: tuple[Check, ...]
    targets: tuple[tuple[str, str, float, float], ...]  # group, figure, value, limit

    @property
    def worse(self) -> list[Check]:
        return [c for c in self.checks if c.worse]

    @property
    def recall_better(self) -> bool:
        recall = [c for c in self.checks if c.kind == "recall"]
        return any(c.better for c in recall) and not any(c.worse for c in recall)

    @property
    def passed(self) -> bool:
        """No figure worse, and recall better."""
        return not self.worse and self.recall_better

    def reasons(self) -> list[str]:
        """Why the candidate is refused (empty when it passes)."""
        out = [f"{c.group}: {c.label} {_fmt(c.candidate)} against {_fmt(c.baseline)}"
               for c in self.worse]
        if not self.recall_better and not any(c.kind == "recall" for c in self.worse):
            out.append("overall: recall is not better than the current default's")
        return out

    def markdown(self) -> str:
        """The checks that moved (worse first), the verdict and the absolute targets."""
        moved = sorted((c for c in self.checks if c.worse or c.better),
                       key=lambda c: (not c.worse, c.kind, c.group))
        lines = ["| group | figure | current | candidate | |", "|---|---|---:|---:|---|"]
        lines += [f"| {c.group} | {c.label} | {_fmt(c.baseline)} | {_fmt(c.candidate)} | "
                  f"{'WORSE' if c.worse else 'better'} |" for c in moved]
        same = len(self.checks) - len(moved)
        lines.append(f"\n{len(self.checks)} figures compared: {len(self.worse)} worse, "
                     f"{len(moved) - len(self.worse)} better, {same} unchanged.")
        lines.append("**Release gate: PASSED**" if self.passed else
                     "**Release gate: REFUSED** — " + "; ".join(self.reasons()))
        if self.targets:
            lines += ["", "Absolute targets (candidate):", "",
                      "| group | figure | value | limit | |", "|---|---|---:|---:|---|"]
            lines += [f"| {g} | {f} | {_fmt(v)} | {_fmt(lim)} | "
                      f"{'met' if v <= lim else 'missed'} |" for g, f, v, lim in self.targets]
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.5g}"


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def load_evaluation(path: str | Path) -> dict[str, Any]:
    """An ``evaluation.json`` (or the folder holding one) written by ``xrd-mask evaluate``."""
    p = Path(path)
    p = p / "evaluation.json" if p.is_dir() else p
    if not p.is_file():
        from ..errors import ConfigError

        raise ConfigError(f"no evaluation at {p}: give an evaluation.json or the folder that "
                          "`xrd-mask evaluate --out` wrote")
    return json.loads(p.read_text())


def _frames(data: Mapping[str, Any]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in data["rows"]:
        key = (r["set"], r["style"], r["seed"], r["size_px"])
        for g in (f"{r['set']}/{r['style']}", r["set"], "overall"):
            out.setdefault(g, []).append(key)
    return {g: sorted(v) for g, v in out.items()}


def _missing_groups(data: Mapping[str, Any]) -> list[str]:
    """``set/style`` groups of the sets ``data`` scored that have no frame in it."""
    from ..simulate.heldout import STYLES_OF_SET

    seen = {(r["set"], r["style"]) for r in data["rows"]}
    sets = {s for s, _ in seen}
    return [f"{s}/{style}" for s in sorted(sets) for style in STYLES_OF_SET.get(s, ())
            if (s, style) not in seen]


def release_gate(candidate: Mapping[str, Any], baseline: Mapping[str, Any], *,
                 masker: str = "unet", baseline_masker: str | None = None) -> GateResult:
    """Hold ``candidate`` against ``baseline`` (both ``evaluation.json`` contents).

    Raises
    ------
    ConfigError
        When a group both have was scored on other frames (other seeds or sizes): the figures
        would not compare. Run both with the same ``--size`` and ``--frames-per-set``. Also
        when a group of a set either scored has no frame (too few ``--frames-per-set``).
    """
    from ..errors import ConfigError
    from ..simulate.heldout import FRAMES_FOR_EVERY_STYLE

    missing = sorted(set(_missing_groups(candidate)) | set(_missing_groups(baseline)))
    if missing:
        raise ConfigError(f"the release gate needs a frame of every held-out group; missing: "
                          f"{', '.join(missing)}. Evaluate both with --frames-per-set "
                          f"{FRAMES_FOR_EVERY_STYLE} or more")
    fc, fb = _frames(candidate), _frames(baseline)
    common = [g for g in candidate["summary"] if g in baseline["summary"]]
    differ = [g for g in common if fc.get(g) != fb.get(g)]
    if differ:
        raise ConfigError(f"the evaluations were made on other frames in {', '.join(differ)}: "
                          "evaluate both with the same --size and --frames-per-set")
    checks: list[Check] = []
    targets: list[tuple[str, str, float, float]] = []
    for g in common:
        c = candidate["summary"][g].get(masker)
        b = baseline["summary"][g].get(baseline_masker or masker)
        if c is None or b is None:
            continue
        spot_free = not _finite(b.get("spot_recall")) and not _finite(c.get("spot_recall"))
        for name, label, _, only_spot_free in SPECIFICITY:
            if only_spot_free and not spot_free:
                continue
            if _finite(c.get(name)) and _finite(b.get(name)):
                checks.append(Check(g, name, label, float(b[name]), float(c[name]),
                                    "specificity"))
        if "/" in g:
            targets += [(g, name, float(c[name]), limit) for name, limit in TARGETS
                        if _finite(c.get(name)) and (spot_free or name == "po_area_error")]
        if g == "overall":
            checks += [Check(g, name, label, float(b[name]), float(c[name]), "recall")
                       for name, label in RECALL if _finite(c.get(name)) and _finite(b.get(name))]
    return GateResult(tuple(checks), tuple(targets))
