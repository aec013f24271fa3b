"""Training throughput on this machine: tiles per second of the default network, fp32 against
bf16 autocast, as `xrd-mask train` runs it (channels-last, Adam, class-weighted loss).

    .venv/bin/python benchmarks/bench_training.py --batch 16 --repeats 3

Prints one table; the rounds alternate fp32 and bf16 so a busy machine loads both alike. Use
it to choose ``xrd-mask train --precision`` on the machine that trains.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from xrd_bluesky_mask.models.network import NetworkConfig, build_network
from xrd_bluesky_mask.sysinfo import machine


def _step(net, opt, loss_fn, x, y, bf16: bool) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
    loss_fn(logits.float(), y).backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="tiles per step (256x256)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of each precision")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round")
    ap.add_argument("--base-channels", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = build_network(NetworkConfig(base_channels=args.base_channels))
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 4.0]))
    x = torch.randn(args.batch, 4, 256, 256).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, 256, 256) > 0.95).long()
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for name in rates:
            _step(net, opt, loss_fn, x, y, name == "bf16")  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.steps):
                _step(net, opt, loss_fn, x, y, name == "bf16")
            rates[name].append(args.batch * args.steps / (time.perf_counter() - t0))
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    bf16_cpu = "avx512_bf16" in flags or "amx_bf16" in flags
    print(f"{machine()}; native bf16 on the CPU: {bf16_cpu}")
    print(f"\nbase channels {args.base_channels}, batch {args.batch}, {args.repeats} rounds\n")
    print("| precision | tiles/s (median) | min | max |\n|---|---:|---:|---:|")
    for name, r in rates.items():
        print(f"| {name} | {statistics.median(r):.1f} | {min(r):.1f} | {max(r):.1f} |")
    ratio = statistics.median(rates["bf16"]) / statistics.median(rates["fp32"])
    print(f"\nbf16 / fp32: {ratio:.2f}x")


if __name__ == "__main__":
    main()
