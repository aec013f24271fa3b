"""Two or more ``xrd-mask evaluate`` results side by side, group by group.

Each result is an ``evaluation.json`` written by ``xrd-mask evaluate --out``; give each a label::

    .venv/bin/python benchmarks/compare_evaluations.py v2=evaluation/default-v2-2880 \
        v3=evaluation/default-v3 --out evaluation/default-v3/compare.md

Prints one Markdown table (and writes it with ``--out``): for every held-out group, the U-Net's
pixel recall, TNR, spot recall, Rwp, masked share and preferred-orientation peak-area error of
each result, then spot recall by distance to the frame edge. Groups whose frames differ between
results (another ``--frames-per-set`` or ``--size``) are refused: the numbers would not compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = (("recall", "pixel recall"), ("tnr", "TNR"), ("spot_recall", "spot recall"),
           ("rwp", "Rwp"), ("masked_pct", "masked %"), ("po_area_error", "PO area err"))


def _fmt(key: str, value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.5f}" if key == "tnr" else f"{value:.4f}" if key == "rwp" else f"{value:.3f}"


def _load(spec: str) -> tuple[str, dict]:
    label, _, path = spec.partition("=")
    p = Path(path or label)
    p = p / "evaluation.json" if p.is_dir() else p
    return (label if path else p.parent.name), json.loads(p.read_text())


def compare(results: list[tuple[str, dict]], masker: str = "unet") -> str:
    """The Markdown comparison of ``results`` (label, evaluation.json contents)."""
    frames = [sorted((r["set"], r["style"], r["seed"], r["size_px"]) for r in data["rows"])
              for _, data in results]
    if any(f != frames[0] for f in frames[1:]):
        raise SystemExit("the results were made on different frames (frames per set or size "
                         "differ): evaluate them on the same ones")
    labels = [label for label, _ in results]
    head = "| group | " + " | ".join(f"{name} ({'/'.join(labels)})" for _, name in METRICS)
    lines = [head + " |", "|---|" + "---:|" * len(METRICS)]
    groups = sorted(results[0][1]["summary"], key=lambda g: (g != "overall", g))
    for g in groups:
        rows = [data["summary"][g][masker] for _, data in results]
        cells = [" / ".join(_fmt(k, r.get(k)) for r in rows) for k, _ in METRICS]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    overall = results[0][1]["summary"]["overall"][masker]
    edge = [k for k in overall if k.startswith("spot_recall_edge")]
    lines += ["", "Spot recall by distance of the spot's centre to the nearest frame edge "
              "(overall):", "", "| model | " + " | ".join(k.rsplit("_", 1)[1] + " px" for k in edge)
              + " |", "|---|" + "---:|" * len(edge)]
    for label, data in results:
        o = data["summary"]["overall"][masker]
        lines.append(f"| {label} | " + " | ".join(_fmt("", o.get(k)) for k in edge) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="LABEL=FOLDER or FOLDER (evaluation.json inside)")
    ap.add_argument("--masker", default="unet", help="masker column of the results (unet)")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    table = compare([_load(s) for s in args.results], args.masker)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
