"""Training runs of different capacity compared at equal wall time.

Each run is a ``xrd-mask train --out RUN`` folder; its ``history.json`` holds, per epoch, the
validation recall at the run's target TNR and the epoch's seconds. Give each a label::

    .venv/bin/python benchmarks/capacity.py base8=runs/capacity-b8 base16=runs/capacity-b16 \
        --out runs/capacity.md --png runs/capacity.png

Prints one Markdown table (and writes it with ``--out``): for each wall-time mark (minutes of
training, summed epoch seconds), the best validation recall each run had reached by then, and
the run's epochs, tiles per second and parameter count; ``--png`` draws recall against minutes.
A run compared at the same wall time is what the two cores would give either way: the question
is which width makes more of the same hour, not which is better after many epochs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _load(spec: str) -> tuple[str, list[dict], dict]:
    label, _, path = spec.partition("=")
    folder = Path(path or label)
    history = json.loads((folder / "history.json").read_text())
    card_path = folder / "best" / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    return (label if path else folder.name), history, card


def _parameters(card: dict) -> int | None:
    """Trainable parameters of the run's network (None without a card)."""
    if not card.get("architecture"):
        return None
    from xrd_bluesky_mask.models.network import NetworkConfig, build_network

    net = build_network(NetworkConfig(**card["architecture"]))
    return sum(p.numel() for p in net.parameters())


def best_by(history: list[dict], minutes: float) -> tuple[float | None, int]:
    """The best validation recall among the epochs finished within ``minutes`` of training,
    and how many epochs that is."""
    elapsed, best, epochs = 0.0, None, 0
    for rec in history:
        elapsed += rec["seconds"] / 60
        if elapsed > minutes:
            break
        epochs += 1
        best = rec["val_recall"] if best is None else max(best, rec["val_recall"])
    return best, epochs


def compare(runs: list[tuple[str, list[dict], dict]], step: float = 10.0) -> str:
    """The Markdown comparison of ``runs`` (label, history, card) every ``step`` minutes."""
    total = min(sum(r["seconds"] for r in history) / 60 for _, history, _ in runs)
    marks = [step * k for k in range(1, int(total // step) + 1)] or [total]
    if marks[-1] < total:
        marks.append(total)
    labels = [label for label, _, _ in runs]
    lines = ["| minutes | " + " | ".join(f"{lb}: best recall (epochs)" for lb in labels) + " |",
             "|---:|" + "---:|" * len(labels)]
    for m in marks:
        cells = []
        for _, history, _ in runs:
            best, epochs = best_by(history, m)
            cells.append("–" if best is None else f"{best:.3f} ({epochs})")
        lines.append(f"| {m:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "| run | parameters | epochs | tiles/s (median) | best recall | at TNR |",
              "|---|---:|---:|---:|---:|---:|"]
    for label, history, card in runs:
        rates = sorted(r["tiles_per_s"] for r in history)
        best = max(history, key=lambda r: r["val_recall"])
        params = _parameters(card)
        lines.append(f"| {label} | {params if params is not None else '–'} | {len(history)} | "
                     f"{rates[len(rates) // 2]:.1f} | {best['val_recall']:.3f} "
                     f"(epoch {best['epoch']}) | {best['val_tnr']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[tuple[str, list[dict], dict]], path: Path) -> None:
    """Validation recall against minutes of training, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, history, _ in runs:
        t, minutes = [], 0.0
        for rec in history:
            minutes += rec["seconds"] / 60
            t.append(minutes)
        ax.plot(t, [r["val_recall"] for r in history], marker="o", ms=3, label=label)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("validation pixel recall at TNR 0.998")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER (or RUN_FOLDER)")
    parser.add_argument("--step", type=float, default=10.0, help="minutes between rows")
    parser.add_argument("--out", type=Path, default=None, help="write the table here too")
    parser.add_argument("--png", type=Path, default=None, help="draw recall against minutes")
    args = parser.parse_args(argv)
    runs = [_load(s) for s in args.runs]
    table = compare(runs, args.step)
    print(table)
    if args.out:
        args.out.write_text(table)
    if args.png:
        plot(runs, args.png)


if __name__ == "__main__":
    main()
