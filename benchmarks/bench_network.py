"""Network stage alone on a 2880x2880 frame: dlsia module vs fused CPU plan, glibc malloc
defaults vs tuned, for one or more models, each combination in a fresh process.

    .venv/bin/python benchmarks/bench_network.py [--model DIR_OR_ID ...] [--repeats 4]

Prints a Markdown table: median and minimum seconds per frame of the network (halo tiles of
768 px, 64 px halo) and the speed-up over the first row (the first model's dlsia module with
glibc's defaults). Every row runs in fp32 (the engines of other precisions are timed per
machine by `xrd_bluesky_mask.masking.engines` and shown by ``xrd-mask bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, sys, time
import numpy as np
from xrd_bluesky_mask.masking.unet import UNetMasker
model, engine, repeats, size = sys.argv[1] or None, sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = UNetMasker(model, engine=engine, device="cpu", precision="fp32")
x = np.random.default_rng(0).normal(size=(4, size, size)).astype(np.float32)
m.probability(x[:, :1024, :1024])
ts = []
for _ in range(repeats):
    t0 = time.perf_counter(); m.probability(x); ts.append(time.perf_counter() - t0)
print(json.dumps({"model": m.model.card.model_id, "params": sum(
    p.numel() for p in m.model.net.parameters()), "times": ts}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", nargs="+", default=[""], help="model folders or ids "
                    "(default: the active model)")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--size", type=int, default=2880)
    args = ap.parse_args()
    import torch  # noqa: F401  (for the machine line)

    from xrd_bluesky_mask.sysinfo import machine

    print(f"machine: {machine()}\nnetwork stage, {args.size}x{args.size} random input, "
          f"{args.repeats} runs after a warm-up, each row a fresh process\n")
    print("| model | params | engine | glibc malloc | median s | min s | speed-up |")
    print("|---|---:|---|---|---:|---:|---:|")
    base = None
    for model in args.model:
        for engine, malloc in (("module", "defaults"), ("module", "tuned"),
                               ("fused", "defaults"), ("fused", "tuned")):
            env = {**os.environ, "XRD_MASK_MALLOC_DEFAULTS": "1" if malloc == "defaults"
                   else "0"}
            out = subprocess.run([sys.executable, "-c", CHILD, model, engine, str(args.repeats),
                                  str(args.size)], env=env, check=True, capture_output=True,
                                 text=True).stdout
            rec = json.loads(out.strip().splitlines()[-1])
            ts = sorted(rec["times"])
            median = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * sum(ts[len(ts) // 2 - 1:][:2])
            base = base or median
            print(f"| {rec['model']} | {rec['params']:,} | {engine} | {malloc} | {median:.2f} | "
                  f"{ts[0]:.2f} | {base / median:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
