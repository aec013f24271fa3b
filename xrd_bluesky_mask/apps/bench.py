"""Throughput of masking + masked integration on full detector frames, side by side.

One run times, on the same simulated frames and in the same process, the one `Pipeline` with:
the U-Net on the fast path (`Pipeline.process` → `UNetMasker.predict_batch`: batched; on a GPU
whole frames and integration as a sparse product on the device; on a CPU halo tiles through the
fused oneDNN plan and pyFAI), the U-Net on the reference path (`Pipeline.process_frame` →
`UNetMasker.predict` running the dlsia module itself, with its probability image), the
classical per-ring filter, the fast path with candidate tiles (the network only where spots
can be, to show what that saves or costs), and optionally the paper's configuration (256 px
qlty windows at step 128, the dlsia module). Each path gets one warm-up batch that is not
counted. It reports per-stage and end-to-end ms/frame, frames/s, peak memory, the machine, the
ratios, how many mask pixels the fast path shares with the reference path, and every network
engine measured for this machine (`UNetMasker.engine_choice`, measured afresh).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..sysinfo import machine

STAGES = ("normalise", "network", "decision", "integrate", "total")
PATHS = ("fast", "candidates", "reference", "classical", "paper")


@dataclass
class PathResult:
    """Median milliseconds per frame of each stage, frames/s and peak memory of one path."""

    name: str
    ms: dict[str, float]
    frames_per_s: float
    peak_host_mib: float | None
    peak_device_mib: float | None = None
    batch: int = 1


@dataclass
class BenchReport:
    """Everything one ``xrd-mask bench`` run measured."""

    machine: str
    size: int
    frames: int
    results: dict[str, PathResult] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    mask_agreement: float | None = None
    pattern_max_rel_diff: float | None = None
    engine: str = ""
    engines: str = ""
    network_coverage: float | None = None

    def table(self) -> str:
        """A Markdown table: ms/frame per stage, frames/s, peak memory."""
        head = "| path | " + " | ".join(f"{s} ms" for s in STAGES) + \
            " | frames/s | peak host MiB | peak GPU MiB |"
        lines = [head, "|---|" + "---:|" * (len(STAGES) + 3)]
        for r in self.results.values():
            gpu = f"{r.peak_device_mib:.0f}" if r.peak_device_mib is not None else "–"
            host = f"{r.peak_host_mib:.0f}" if r.peak_host_mib is not None else "–"
            lines.append(f"| {r.name} | " + " | ".join(f"{r.ms.get(s, 0.0):.0f}" for s in STAGES)
                         + f" | {r.frames_per_s:.2f} | {host} | {gpu} |")
        return "\n".join(lines)

    def summary(self) -> str:
        """Machine line, table, ratios and agreement, as printed by ``xrd-mask bench``."""
        out = [f"machine: {self.machine}",
               f"frames: {self.frames} of {self.size}x{self.size} (after 1 warm-up), "
               "medians per frame", "", self.table(), ""]
        out += [f"{k}: {v:.2f}x" for k, v in self.ratios.items()]
        if self.mask_agreement is not None:
            out.append(f"fast vs reference masks: {100 * self.mask_agreement:.4f} % of pixels "
                       f"equal; patterns max relative difference {self.pattern_max_rel_diff:.1e}")
        if self.network_coverage is not None:
            out.append(f"candidate tiles: the network ran on {100 * self.network_coverage:.0f} % "
                       "of the pixels (median over the frames)")
        if self.engines:
            out += ["", f"network engines on this machine (fast path uses {self.engine}):",
                    self.engines]
        return "\n".join(out)

    def to_json(self, path: str | Path) -> Path:
        """Write the report as JSON (for tracking across commits and machines)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter of this process (Linux; ignored elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _time_path(name: str, run_batch: Callable[[list[np.ndarray]], list[Any]],
               frames: Sequence[np.ndarray], batch: int, device: Any = None) -> tuple[
                   PathResult, list[Any]]:
    """Run ``frames`` through ``run_batch`` in batches; the first batch is a warm-up."""
    import torch

    cuda = device is not None and torch.device(device).type == "cuda"
    run_batch(list(frames[:batch]))
    _reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rows, outputs = [], []
    t0 = time.perf_counter()
    for i in range(batch, len(frames), batch):
        res = run_batch(list(frames[i:i + batch]))
        outputs += res
        rows += [r.timings for r in res]
    wall = time.perf_counter() - t0
    ms = {s: 1000 * statistics.median(r.get(s, 0.0) for r in rows) for s in STAGES}
    gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return PathResult(name, ms, len(rows) / wall, _peak_rss_mib(), gpu, batch), outputs


def run_bench(size: int = 2880, frames: int = 4, *, batch: int | None = None,
              paths: Sequence[str] = ("fast", "candidates", "reference", "classical"),
              model: str | None = None, device: str | None = None,
              preset: str = "rings_spots", progress: bool = True,
              precision: str = "auto", engines: bool = True) -> BenchReport:
    """Time the ``paths`` on ``frames`` simulated ``size`` x ``size`` frames (plus warm-ups).

    ``batch``: frames per fast-path batch; None = 4 on a GPU, 1 on the CPU. ``precision``:
    the U-Net's engine (``"auto"``: this machine's choice). ``engines``: measure every
    engine afresh first (and cache the result) and report them."""
    import torch

    from ..masking.classical import RingOutlierMasker
    from ..masking.unet import UNetMasker
    from ..pipeline import ExecutionPolicy, Pipeline
    from ..progress import progress as tqdm
    from ..simulate import simulate_frame

    if batch is None:
        cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        batch = 4 if cuda else 1
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise ValueError(f"unknown bench paths {sorted(unknown)}; choose from {PATHS}")
    n_total = frames + batch
    sims = [simulate_frame(preset, seed=i, shape=(size, size))
            for i in tqdm(range(n_total), desc="simulating frames", disable=not progress)]
    geometry = sims[0].geometry
    images = [s.image for s in sims]
    del sims
    unet = UNetMasker(model, device=device, precision=precision)
    report = BenchReport(machine=machine(), size=size, frames=frames)
    if engines:
        choice = unet.engine_choice(refresh=True, check_all=True)
        report.engines = choice.table()
    report.engine = unet.precision

    def one_by_one(masker: Any) -> Callable[[list[np.ndarray]], list[Any]]:
        pipeline = Pipeline(masker, geometry, policy=ExecutionPolicy(batch=1))
        return lambda fs: [pipeline.process_frame(f) for f in fs]

    runners: dict[str, tuple[str, Callable, int]] = {}
    if "fast" in paths:
        fast = Pipeline(unet, geometry, policy=ExecutionPolicy(batch=batch))
        runners["fast"] = (f"U-Net fast path ({fast.policy.describe()}, {unet.device.type}, "
                           f"{unet.engine} network)", fast.process, batch)
    coverage: list[float] = []
    if "candidates" in paths:
        cand_unet = UNetMasker(unet.model, device=device, precision=unet.precision,
                               candidates="fast")
        cand = Pipeline(cand_unet, geometry, policy=ExecutionPolicy(batch=batch))

        def cand_run(fs: list[np.ndarray]) -> list[Any]:
            out = cand.process(fs)
            coverage.append(cand_unet.network_coverage)
            return out

        runners["candidates"] = ("U-Net fast path with candidate tiles", cand_run, batch)
    if "reference" in paths:
        module = UNetMasker(model, device=device, engine="module", precision="fp32")
        runners["reference"] = (f"U-Net reference path (dlsia module, halo tiles, "
                                f"{unet.device.type})", one_by_one(module), 1)
    if "classical" in paths:
        runners["classical"] = ("classical per-ring filter", one_by_one(RingOutlierMasker()), 1)
    if "paper" in paths:
        paper = UNetMasker(model, inference="quilt", window=256, step=128, border=32,
                           batch_size=32, device=device, engine="module", precision="fp32")
        runners["paper"] = ("U-Net paper configuration (qlty 256/128)", one_by_one(paper), 1)
    outputs = {}
    for key, (name, fn, b) in tqdm(runners.items(), desc="timing paths", disable=not progress):
        use = images[batch - b:] if b < batch else images  # every path times the same frames
        report.results[key], outputs[key] = _time_path(name, fn, use, b, unet.device)
        if key == "candidates":
            report.network_coverage = statistics.median(coverage[1:] or coverage)
    total = {k: r.ms["total"] for k, r in report.results.items()}
    best_unet = "fast" if "fast" in total else "reference"
    if best_unet in total and "classical" in total:
        report.ratios[f"{best_unet} U-Net / classical (ms per frame)"] = \
            total[best_unet] / total["classical"]
    if "paper" in total and best_unet in total:
        report.ratios[f"paper configuration / {best_unet} U-Net (ms per frame)"] = \
            total["paper"] / total[best_unet]
    if "fast" in total and "candidates" in total:
        report.ratios["fast path / with candidate tiles (ms per frame)"] = \
            total["fast"] / total["candidates"]
    if "fast" in total and "reference" in total:
        report.ratios["reference / fast U-Net (ms per frame)"] = \
            total["reference"] / total["fast"]
        fa, re = outputs["fast"], outputs["reference"]
        report.mask_agreement = float(np.mean([np.mean(a.mask.spots == b.mask.spots)
                                               for a, b in zip(fa, re, strict=True)]))
        report.pattern_max_rel_diff = float(max(
            np.nanmax(np.abs(a.pattern.values - b.pattern.values)) / np.nanmax(b.pattern.values)
            for a, b in zip(fa, re, strict=True)))
    return report
