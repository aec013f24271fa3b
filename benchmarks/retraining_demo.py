"""What retraining is for, measured: a scene the packaged model gets wrong, a few of its frames
annotated, the model fine-tuned on them, and both models scored on held-out frames of that
scene and on the standard evaluation groups.

    .venv/bin/python benchmarks/retraining_demo.py --size 768 --annotated 4 --epochs 8 --lr 3e-4

The scene is a preset of the simulator (default ``spots_texture``: grainy, textured Cu +
graphite rings with arcs and single-crystal spots, where the packaged model masks grains and
misses spots) at ``--size`` px. Frames ``1..--annotated`` are "annotated": their truth masks
become the corrected masks (codes 0 keep, 1 spot, 2 static, as `accept_masks` stores them),
and the project's own retraining code does the rest, as the ``retrain`` plan does after reading
the annotations from Tiled (`retrain.prepare`): `split_heldout` keeps a quarter of the annotated
frames out of training, `check_labels` refuses too few spot pixels, `fine_tune` trains from the
packaged default and `judge` (inside it) says whether the activation gate would switch to the
new model. Both models are then scored with `xrd-mask evaluate`'s metrics (`score_frame`) on
frames ``101..100+--heldout`` of the scene (never annotated) and on ``--group-frames`` frames of
each other group (the held-out frames `xrd-mask evaluate` renders for that style).

Prints one table (group, frames, metric, base, retrained, change) and the gate's verdict.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrd_bluesky_mask.apps.evaluate import Report, heldout_cases, score_frame, simulate_case
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.models.store import DEFAULT_MODEL_DIR, load_model
from xrd_bluesky_mask.retrain import RetrainSettings, fine_tune
from xrd_bluesky_mask.simulate import PRESETS, SceneConfig, preset, simulate_frame
from xrd_bluesky_mask.sysinfo import machine
from xrd_bluesky_mask.training.annotated import AnnotatedFrames, check_labels, split_heldout

#: Frame seeds of the scene: annotated frames are ``1..n``, held-out frames from here on.
HELDOUT_SEED = 101
#: The other groups scored: ``(xrd-mask evaluate set, style, what it stands for)``.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("presets", "rings_spots", "spots on smooth rings"),
    ("presets", "spots_po", "preferred orientation + spots"),
    ("presets", "perfect", "spot-free powder"),
    ("negatives", "sharp_rings", "spot-free sharp rings"),
    ("negatives", "grainy_high", "spot-free grainy rings"),
)
#: ``(key in the evaluation summary, label, higher is better, worse beyond)``: a change in the
#: bad direction larger than the last value counts as worse (relative for Rwp, absolute else).
SPOT_METRICS = (("spot_recall", "spot recall", True, 0.01),
                ("recall", "pixel recall", True, 0.01),
                ("tnr", "TNR", True, 0.0002),
                ("rwp", "Rwp", False, 0.02))
FREE_METRICS = (("masked_pct", "masked % (all false)", False, 0.01),
                ("rwp", "Rwp", False, 0.02))
MODELS = ("base", "retrained")


@dataclass
class Row:
    """One line of the table: a metric of one group for both models."""

    group: str
    frames: int
    metric: str
    base: float
    new: float
    higher_better: bool
    tolerance: float
    relative: bool

    @property
    def change(self) -> float:
        """``new - base`` (relative to ``base`` for Rwp)."""
        diff = self.new - self.base
        return diff / self.base if self.relative and self.base else diff

    @property
    def worse(self) -> bool:
        """Whether the retrained model moved the bad way by more than the tolerance."""
        bad = -self.change if self.higher_better else self.change
        return bool(np.isfinite(bad) and bad > self.tolerance)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scene", default="spots_texture", choices=sorted(PRESETS),
                    help="simulator preset the demo retrains on")
    ap.add_argument("--size", type=int, default=768, help="frame size, px (square)")
    ap.add_argument("--annotated", type=int, default=4,
                    help="frames of the scene annotated (a quarter held out by the gate)")
    ap.add_argument("--spot-free", type=int, default=0,
                    help="spot-free frames of the scene's rings annotated too (all 'not a spot')")
    ap.add_argument("--heldout", type=int, default=6,
                    help="frames of the scene never annotated, to score both models")
    ap.add_argument("--group-frames", type=int, default=3, help="frames per other group")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4,
                    help="Adam learning rate (a third of RetrainSettings' default: less drift)")
    ap.add_argument("--batch-size", type=int, default=8, help="tiles per step")
    ap.add_argument("--target-tnr", type=float, default=0.998,
                    help="validation TNR the retrained model's threshold is chosen for")
    ap.add_argument("--window", type=int, default=256, help="training tile size, px")
    ap.add_argument("--min-spot-px", type=int, default=500,
                    help="spot pixels needed in the training frames")
    ap.add_argument("--rehearsal", type=float, default=RetrainSettings().rehearsal,
                    help="share of the training tiles that are simulated rehearsal tiles "
                    "(RetrainSettings.rehearsal; 0: none)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split and of training")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the retrained model is written (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.size < args.window:
        ap.error(f"--size {args.size} is smaller than the {args.window} px training window")
    if args.annotated < 2:
        ap.error("--annotated needs at least 2 frames (one to train on, one held out)")
    if min(args.heldout, args.group_frames, args.epochs) < 1:
        ap.error("--heldout, --group-frames and --epochs must be at least 1")
    if args.spot_free < 0:
        ap.error("--spot-free cannot be negative")
    if not 0 <= args.rehearsal <= 0.9:
        ap.error(f"--rehearsal {args.rehearsal} is outside 0-0.9 (a share of the tiles)")
    return args


def scene(name: str, size: int) -> SceneConfig:
    """The demo's scene: preset ``name`` on a ``size`` x ``size`` px detector (same area)."""
    return preset(name).with_shape((size, size))


def corrected_mask(sim: Any) -> np.ndarray:
    """The corrected mask a person would draw for a simulated frame: its truth labels as uint8
    codes (1 spot, 0 checked and not a spot, 2 static: the simulator's detector mask)."""
    return np.where(sim.static_mask, 2, sim.labels.astype(np.uint8)).astype(np.uint8)


def annotated_run(cfg: SceneConfig, n: int, spot_free: int = 0) -> AnnotatedFrames:
    """Frames ``1..n`` of the scene and ``spot_free`` frames of its rings without spots (the
    same powder with no crystallite in the beam, indices ``n+1..``) with their corrected
    masks, as `retrain.prepare` reads an annotated run from Tiled (``heldout`` still empty)."""
    free = cfg.updated(spots={"count": 0})
    sims = [simulate_frame(cfg, seed=s) for s in range(1, n + 1)]
    sims += [simulate_frame(free, seed=s) for s in range(n + 1, n + spot_free + 1)]
    return AnnotatedFrames(f"demo-{cfg.name}", list(range(1, len(sims) + 1)),
                           [s.image for s in sims], [corrected_mask(s) for s in sims],
                           sims[0].geometry)


def group_cases(frames: int) -> list[tuple[str, Any]]:
    """``(group name, Case)`` for ``frames`` held-out frames of each of `GROUPS`: the frames
    `xrd-mask evaluate` renders for that style."""
    out = []
    for set_name, style, _ in GROUPS:
        n_styles = len({c.style for c in heldout_cases(8, (set_name,))})
        cases = [c for c in heldout_cases(n_styles * frames, (set_name,)) if c.style == style]
        out += [(f"{set_name}/{style}", c) for c in cases]
    return out


def score_all(maskers: dict[str, Any], cfg: SceneConfig, args: argparse.Namespace) -> Report:
    """`score_frame` of each masker on the scene's held-out frames (group ``scene/<name>``) and
    on the frames of `group_cases`; a `Report` whose summary pools them per group."""
    report = Report()
    for seed in range(HELDOUT_SEED, HELDOUT_SEED + args.heldout):
        sim = simulate_frame(cfg, seed=seed)
        report.rows.append({"set": "scene", "style": cfg.name, "seed": seed,
                            "size_px": args.size, "maskers": score_frame(sim, maskers)})
    for group, case in group_cases(args.group_frames):
        set_name, style = group.split("/")
        sim = simulate_case(case, args.size)
        report.rows.append({"set": set_name, "style": style, "seed": case.seed,
                            "size_px": args.size, "maskers": score_frame(sim, maskers)})
    return report


def comparison(report: Report) -> list[Row]:
    """The table's rows from the report's per-style summary: spot metrics for groups with
    spots, the masked share and Rwp for spot-free groups."""
    rows = []
    for group, by in report.summary().items():
        if group.count("/") != 1:  # only the per-style groups, not sets or "overall"
            continue
        base, new = by[MODELS[0]], by[MODELS[1]]
        has_spots = np.isfinite(base["spot_recall"])
        for key, label, higher, tol in SPOT_METRICS if has_spots else FREE_METRICS:
            rows.append(Row(group, int(base["frames"]), label, float(base[key]), float(new[key]),
                            higher, tol, key == "rwp"))
    return rows


def _fmt(metric: str, value: float) -> str:
    if not np.isfinite(value):
        return "–"
    return format(value, {"TNR": ".5f", "Rwp": ".4f"}.get(metric, ".3f"))


def _fmt_change(row: Row) -> str:
    c = row.change
    if not np.isfinite(c):
        return "–"
    text = f"{100 * c:+.1f} %" if row.relative else (
        f"{c:+.5f}" if row.metric == "TNR" else f"{c:+.3f}")
    return text + (" (worse)" if row.worse else "")


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (Rwp's change relative, the others absolute)."""
    lines = ["| group | frames | metric | base | retrained | change |",
             "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r.group} | {r.frames} | {r.metric} | {_fmt(r.metric, r.base)} | "
              f"{_fmt(r.metric, r.new)} | {_fmt_change(r)} |" for r in rows]
    return "\n".join(lines)


def summary(rows: Sequence[Row], scene_group: str) -> str:
    """One sentence: whether the scene's held-out frames got better and which groups worse."""
    scene_rows = [r for r in rows if r.group == scene_group]
    better = [r.metric for r in scene_rows
              if np.isfinite(r.change) and (r.change > 0) == r.higher_better and r.change != 0]
    worse = sorted({f"{r.group} ({r.metric})" for r in rows if r.worse})
    return (f"held-out frames of the scene: better in {', '.join(better) or 'nothing'}; "
            f"worse beyond tolerance: {', '.join(worse) or 'no group'}")


def guard_table(guard: dict[str, list[dict[str, Any]]]) -> str:
    """The gate's guard frames (`FineTuneResult.guard`) as a Markdown table."""
    lines = ["| guard frame | px | masked % base | retrained | Rwp base | retrained |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {b['style']} (seed {b['seed']}) | {b['size_px']} | {b['masked_pct']:.3f} | "
              f"{n['masked_pct']:.3f} | {b['rwp']:.4f} | {n['rwp']:.4f} |"
              for n, b in zip(guard["new"], guard["base"], strict=True)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    cfg = scene(args.scene, args.size)
    settings = RetrainSettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                               window=args.window, min_spot_px=args.min_spot_px,
                               target_tnr=args.target_tnr, rehearsal=args.rehearsal,
                               seed=args.seed, device="cpu")
    run = annotated_run(cfg, args.annotated, args.spot_free)
    split_heldout([run], settings.heldout_fraction, settings.seed)
    spot_px = check_labels([run], min_spot_px=settings.min_spot_px, window=settings.window)
    print(f"{machine()}\nscene {args.scene} at {args.size}x{args.size} px; annotated frames "
          f"{run.indices} (training {run.train_indices}, held out by the gate {run.heldout}, "
          f"{spot_px} spot px to train on); {args.epochs} epochs at lr {args.lr:g}, rehearsal "
          f"{args.rehearsal:g}", flush=True)
    base = load_model(DEFAULT_MODEL_DIR, device="cpu")
    with tempfile.TemporaryDirectory(prefix="retraining-demo-") as tmp:
        workdir = args.workdir or Path(tmp)

        def on_epoch(h: dict[str, Any]) -> None:
            print(f"epoch {h['epoch']}: loss {h['loss']:.4f}, validation recall "
                  f"{h['val_recall']:.3f} at TNR {h['val_tnr']:.4f} ({h['seconds']:.0f} s)",
                  flush=True)

        t1 = time.perf_counter()
        result = fine_tune([run], base, settings, workdir, on_epoch=on_epoch)
        train_s = time.perf_counter() - t1
        maskers = {MODELS[0]: UNetMasker(base, device="cpu"),
                   MODELS[1]: UNetMasker(result.model_dir, device="cpu")}
        report = score_all(maskers, cfg, args)
    rows = comparison(report)
    scene_group = f"scene/{args.scene}"
    print(f"\nbase {base.card.model_id} (packaged default, threshold {base.card.threshold:.3f}); "
          f"retrained on {result.n_tiles} tiles ({result.n_rehearsal} of them rehearsal), "
          f"{len(result.history)} epochs and the gate's scoring in {train_s:.0f} s "
          f"(the best epoch kept, threshold {result.card.threshold:.3f})\n")
    print(table(rows))
    print(f"\n{summary(rows, scene_group)}")
    if result.guard:
        print(f"\n{guard_table(result.guard)}\n")
    print(f"activation gate (judge, on the {result.new['frames']} annotated frame(s) held out "
          f"and {len(result.guard.get('new', []))} spot-free guard frames): "
          f"{'activate' if result.better else 'keep the base model'}: {result.verdict}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
