"""GPU throughput of the whole pipeline (input channels ▸ U-Net ▸ masked integration on the
device) for batch 1/4/16, bf16 and fp16, with and without ``torch.compile``; run by
``benchmarks/gpu.sh``.

    .venv/bin/python benchmarks/gpu_bench.py [--size 2880] [--budget-s 270] [--json out.json]

Prints the machine, then a Markdown table: end-to-end frames/s, network ms per frame, the
share of mask pixels equal to fp32's on the same frames and the peak GPU memory. Frames are a
few simulated ones, cycled to fill the batches. Configurations not started within
``--budget-s`` seconds are listed as skipped (``torch.compile`` compiles once per batch size
and precision, tens of seconds each). Exit 2 without CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BATCHES = (1, 4, 16)
PRECISIONS = ("bf16", "fp16")


@dataclass
class Row:
    """One configuration's numbers (None where it did not run)."""

    batch: int
    precision: str
    compiled: bool
    frames_per_s: float | None = None
    network_ms: float | None = None
    agreement: float | None = None
    peak_gpu_mib: float | None = None
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=2880, help="frame side, px (default 2880)")
    ap.add_argument("--frames", type=int, default=4,
                    help="distinct simulated frames, cycled (default 4)")
    ap.add_argument("--model", default=None, help="model folder or id (default: active)")
    ap.add_argument("--budget-s", type=float, default=270.0,
                    help="start no configuration after this many seconds (default 270)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.size < 64 or args.frames < 1 or args.budget_s <= 0:
        ap.error("--size must be >= 64, --frames >= 1 and --budget-s > 0")
    return args


def configurations() -> list[tuple[int, str, bool]]:
    """(batch, precision, compiled), uncompiled first: they take seconds, compiling minutes."""
    return [(b, p, c) for c in (False, True) for p in PRECISIONS for b in BATCHES]


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""

    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = ["| batch | precision | torch.compile | frames/s | network ms/frame | "
             "masks equal to fp32 | peak GPU MiB | note |",
             "|---:|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        agree = "–" if r.agreement is None else f"{100 * r.agreement:.4f} %"
        lines.append(f"| {r.batch} | {r.precision} | {'on' if r.compiled else 'off'} | "
                     f"{num(r.frames_per_s, '.2f')} | {num(r.network_ms, '.1f')} | {agree} | "
                     f"{num(r.peak_gpu_mib, '.0f')} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.sh needs a CUDA GPU: torch.cuda.is_available() is False on this "
              f"machine (torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it "
              "on a machine with an NVIDIA GPU and its driver.", file=sys.stderr)
        return 2
    import numpy as np

    from xrd_bluesky_mask.masking.unet import UNetMasker
    from xrd_bluesky_mask.pipeline import ExecutionPolicy, Pipeline
    from xrd_bluesky_mask.simulate import simulate_frame
    from xrd_bluesky_mask.sysinfo import machine

    start = time.perf_counter()
    styles = ("rings_spots", "spots_po", "spots_texture", "perfect")
    sims = [simulate_frame(styles[i % 4], seed=i, shape=(args.size, args.size))
            for i in range(args.frames)]
    geometry, frames = sims[0].geometry, [s.image for s in sims]
    del sims
    print(f"machine: {machine()}\n{args.size}x{args.size} frames, {args.frames} simulated "
          f"and cycled; set-up {time.perf_counter() - start:.0f} s\n", flush=True)

    def run(precision: str, batch: int, compiled: bool, n: int) -> tuple[list, float, float]:
        masker = maskers[precision]
        pipeline.masker = masker
        pipeline.policy = ExecutionPolicy(batch=batch, precision=precision,  # type: ignore[arg-type]
                                          compile=compiled).resolved(
            "cuda", batchable=True, bf16=torch.cuda.is_bf16_supported())
        batches = [[frames[(i + k) % len(frames)] for k in range(batch)]
                   for i in range(0, n, batch)]
        pipeline.process(batches[0])  # warm-up (and compilation)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        results, t0 = [], time.perf_counter()
        for b in batches:
            results += pipeline.process(b)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        network = statistics.median(r.timings["network"] for r in results)
        return results, len(results) / wall, 1000 * network

    maskers = {p: UNetMasker(args.model, device="cuda", precision=p)
               for p in ("fp32", *PRECISIONS)}
    pipeline = Pipeline(maskers["fp32"], geometry, policy=ExecutionPolicy(
        batch=1, precision="fp32", integrate_on_device=True))
    reference, _, _ = run("fp32", 1, False, len(frames))
    ref = [r.mask.spots for r in reference]
    rows = []
    for batch, precision, compiled in configurations():
        row = Row(batch, precision, compiled)
        rows.append(row)
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            row.note = "no bf16 on this GPU"
            continue
        if time.perf_counter() - start > args.budget_s:
            row.note = f"skipped: past the {args.budget_s:.0f} s budget"
            continue
        try:
            results, row.frames_per_s, row.network_ms = run(
                precision, batch, compiled, max(2 * batch, 8))
        except torch.cuda.OutOfMemoryError:
            row.note = "out of GPU memory"
            torch.cuda.empty_cache()
            continue
        row.peak_gpu_mib = torch.cuda.max_memory_allocated() / 2**20
        row.agreement = float(np.mean([np.mean(r.mask.spots == ref[i % len(ref)])
                                       for i, r in enumerate(results)]))
        print(f"batch {batch} {precision} compile {'on' if compiled else 'off'}: "
              f"{row.frames_per_s:.2f} frames/s", flush=True)
    print("\n" + table(rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
