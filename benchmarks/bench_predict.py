"""Per-stage time of masking + integrating one 2880x2880 frame, U-Net vs classical.

Prints a Markdown table of median seconds per stage (normalise, tile, network, stitch,
threshold, integrate, total) over ``--repeats`` frames after one warm-up frame, and the ratio
U-Net / classical measured side by side in the same process. Run:

    .venv/bin/python benchmarks/bench_predict.py [--size 2880] [--repeats 3] [--no-quilt]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import numpy as np

from xrd_bluesky_mask.sysinfo import machine

STAGES = ["normalise", "tile", "network", "stitch", "threshold", "integrate", "total"]


def model_folder(path: str | None) -> tuple[str, str]:
    """The model to time: given, the packaged default, or an untrained net of the same shape."""
    from xrd_bluesky_mask.masking.network import build_network
    from xrd_bluesky_mask.models import DEFAULT_MODEL_DIR, ModelCard, save_model

    if path:
        return path, path
    if (DEFAULT_MODEL_DIR / "model_card.json").exists():
        return str(DEFAULT_MODEL_DIR), "packaged default"
    folder = tempfile.mkdtemp()
    save_model(build_network(), ModelCard(model_id="untrained-timing"), folder)
    return folder, "untrained net of the default architecture (same cost)"


def bench(masker, frames, geometry) -> dict[str, float]:
    """Median seconds per stage over ``frames`` (the first frame is a warm-up, not counted)."""
    from xrd_bluesky_mask.pipeline import process_frame

    rows = []
    for i, frame in enumerate(frames):
        res = process_frame(frame, geometry, masker)
        if i:
            rows.append(res.timings)
    return {s: statistics.median(r.get(s, 0.0) for r in rows) for s in STAGES}


def main() -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2880)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-quilt", action="store_true", help="skip the paper's qlty path (~30 s)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()

    from xrd_bluesky_mask.masking.classical import RingOutlierMasker
    from xrd_bluesky_mask.masking.unet import UNetMasker
    from xrd_bluesky_mask.simulate import simulate_frame

    sims = [simulate_frame("rings_spots", seed=i, shape=(args.size, args.size))
            for i in range(args.repeats + 1)]
    geometry = sims[0].geometry
    frames = [s.image for s in sims]
    folder, what = model_folder(args.model)
    maskers = {
        "U-Net (halo, fp32)": UNetMasker(folder),
        "classical": RingOutlierMasker(),
    }
    if not args.no_quilt:
        maskers["U-Net (paper: qlty 256/128)"] = UNetMasker(
            folder, inference="quilt", window=256, step=128, border=32, batch_size=32)
    results = {name: bench(m, frames, geometry) for name, m in maskers.items()}

    print(f"\nmachine: {machine()}\nmodel: {what}\nframe: {args.size}x{args.size} float32, "
          f"median of {args.repeats} frames after 1 warm-up\n")
    print("| masker | " + " | ".join(STAGES) + " |")
    print("|---|" + "---:|" * len(STAGES))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[s]:.3f}" for s in STAGES) + " |")
    base = results["classical"]["total"]
    print()
    for name, r in results.items():
        if name != "classical":
            print(f"{name} / classical (total): {r['total'] / base:.1f}x")
    paper, halo = "U-Net (paper: qlty 256/128)", "U-Net (halo, fp32)"
    if paper in results:
        sp = results[paper]["total"] / results[halo]["total"]
        print(f"paper path / halo path (total): {sp:.1f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "size": args.size, "results": results}, fh, indent=1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
