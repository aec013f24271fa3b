"""Which engine runs the network on this machine: measured once per machine and model, cached.

The fastest numeric precision depends on the hardware, so it is measured, not assumed: on a
2-core AMD EPYC with native bf16 (``avx512_bf16``) ``torch.autocast`` in bf16 ran the U-Net
2.4x faster than fp32; on one with AVX2 only it ran 9x slower. On first use `choose_engine`
times every candidate on a small input, keeps the fastest whose spot masks agree with fp32 on
at least `MIN_AGREEMENT` of the pixels of a check frame, logs the choice and caches it (a JSON
file in the user cache folder of `platformdirs`, ``$XRD_MASK_CACHE`` overrides the folder)
under a key of the CPU model and instruction-set flags (or the GPU's name), the torch version
and the model's weights. A user forces an engine with ``--precision`` (`UNetMasker`'s
``precision``).

Engines (`ENGINES`):

``fp32``
    float32: on a CPU the fused oneDNN plan (`fused.FusedTUNet`), else the module.
``bf16``, ``fp16``
    ``torch.autocast`` of the module in that precision.
``bf16-fused``
    The fused oneDNN plan with bf16 weights and maps (CPUs whose oneDNN has bf16 kernels:
    AVX-512 or AVX-NE-CONVERT; elsewhere it does not run and is reported so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocols import PRECISIONS

if TYPE_CHECKING:
    import torch

    from ..geometry import Geometry

log = logging.getLogger(__name__)

ENGINES = PRECISIONS
#: Share of a check frame's pixels whose spot/no-spot answer must equal fp32's.
MIN_AGREEMENT = 0.9999
#: Environment variable naming the folder of the engine cache.
CACHE_ENV = "XRD_MASK_CACHE"
#: Side of the square input the engines are timed on, px (a few seconds in all, even where an
#: engine is 10x slower than fp32).
TIMING_PX = 256
#: Side of the synthetic check frame, px.
CHECK_PX = 768


def candidate_engines(device_type: str, *, bf16: bool = True) -> tuple[str, ...]:
    """The engines worth timing on a ``device_type`` (``"cpu"``, ``"cuda"``) device; ``bf16``:
    a CUDA device that has bf16 arithmetic."""
    if device_type == "cuda":
        return ("fp32", "bf16", "fp16") if bf16 else ("fp32", "fp16")
    if device_type == "cpu":
        return ("fp32", "bf16", "bf16-fused")
    return ("fp32",)


@dataclass
class EngineTiming:
    """What was measured for one engine."""

    engine: str
    #: median milliseconds of one pass over the timing input; None: it did not run
    ms: float | None = None
    #: share of the check frame's pixels whose mask equals fp32's; None: not checked
    agreement: float | None = None
    #: ``"chosen"``, ``"slower"``, ``"disagrees"``, ``"unavailable: ..."``, ``"forced"``
    note: str = ""


@dataclass
class EngineChoice:
    """The engine a masker uses on this machine, and why."""

    engine: str
    key: str
    #: ``"measured"`` (now), ``"cached"`` (an earlier measurement) or ``"forced"`` (the user)
    source: str
    timings: list[EngineTiming] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""

    def describe(self) -> str:
        """One log line: the engine, where the choice comes from and what was measured."""
        parts = []
        for t in self.timings:
            ms = f"{t.ms:.0f} ms" if t.ms is not None else "–"
            agree = f", {100 * t.agreement:.3f} % equal" if t.agreement is not None else ""
            parts.append(f"{t.engine} {ms}{agree} ({t.note})")
        return (f"engine {self.engine} ({self.source}"
                + (f"; {TIMING_PX} px input: " + "; ".join(parts) if parts else "") + ")")

    def table(self) -> str:
        """A Markdown table of the engines measured."""
        lines = [f"| engine | ms per {TIMING_PX}x{TIMING_PX} px pass | masks equal to fp32 "
                 "| outcome |", "|---|---:|---:|---|"]
        for t in self.timings:
            ms = f"{t.ms:.1f}" if t.ms is not None else "–"
            agree = f"{100 * t.agreement:.4f} %" if t.agreement is not None else "–"
            lines.append(f"| {t.engine} | {ms} | {agree} | {t.note} |")
        return "\n".join(lines)


def machine_facts(device: torch.device) -> dict[str, Any]:
    """What the engine choice depends on: CPU model and flags (or GPU), torch version."""
    import torch

    facts: dict[str, Any] = {"device": device.type, "torch": torch.__version__}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["capability"] = list(torch.cuda.get_device_capability(device))
        return facts
    model, flags = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif name.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    facts["cpu"] = model
    facts["cpu_flags_sha"] = hashlib.sha256(flags.encode()).hexdigest()[:16]
    facts["bf16_flags"] = sorted(f for f in flags.split() if "bf16" in f or "amx" in f)
    return facts


def choice_key(facts: dict[str, Any], model_sha256: str, model_id: str) -> str:
    """Cache key of a machine (``facts`` of `machine_facts`) and a model."""
    text = json.dumps({**facts, "model": model_id, "sha": model_sha256}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_file() -> Path:
    """``engines.json`` in ``$XRD_MASK_CACHE``, else in the user cache folder."""
    import platformdirs

    folder = os.environ.get(CACHE_ENV) or platformdirs.user_cache_path(
        "xrd-bluesky-mask", appauthor=False)
    return Path(folder) / "engines.json"


def cached_choice(key: str) -> EngineChoice | None:
    """The cached choice for ``key``, or None (no cache, no entry, an unreadable file)."""
    path = cache_file()
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("engine") not in ENGINES:
        return None
    timings = [EngineTiming(**t) for t in entry.get("timings", [])]
    return EngineChoice(entry["engine"], key, "cached", timings, entry.get("machine", {}),
                        entry.get("measured_at", ""))


def store_choice(choice: EngineChoice) -> Path | None:
    """Add ``choice`` to the cache file (under a file lock); None when it cannot be written
    (logged: the choice is then measured again in the next process)."""
    from filelock import FileLock

    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=30):
            try:
                data = json.loads(path.read_text())
                data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                data = {}
            entry = {k: v for k, v in asdict(choice).items() if k not in ("key", "source")}
            data[choice.key] = entry
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(path)
    except OSError as exc:
        log.warning("xrd-mask: could not cache the engine choice in %s (%s)", path, exc)
        return None
    return path


def check_frame(size: int = CHECK_PX, seed: int = 0) -> tuple[np.ndarray, Geometry]:
    """A synthetic powder frame with spots (Poisson counts) and its geometry, the same on every
    machine: rings across the frame, one with preferred orientation, 24 spots from faint to
    bright, 1-3 px wide."""
    from ..geometry import make_geometry

    geometry = make_geometry((size, size), pixel_size_m=150e-6, distance_m=0.12)
    rng = np.random.default_rng(seed)
    tth, chi = geometry.tth_deg(), geometry.chi_deg()
    expected = 100.0 + 20.0 * np.cos(np.radians(chi))
    for k, ring in enumerate(np.linspace(float(tth.min()) + 2.0, float(tth.max()) - 1.0, 6)):
        peak = 400.0 * (1.0 + 0.8 * np.cos(np.radians(2 * chi))) if k == 2 else 600.0 / (k + 1)
        expected = expected + peak * np.exp(-0.5 * ((tth - ring) / 0.08) ** 2)
    rr, cc = np.indices((size, size))
    for _ in range(24):
        r, c = rng.uniform(8, size - 8, 2)
        width, peak = rng.uniform(0.7, 3.0), 10 ** rng.uniform(2.0, 4.0)
        expected = expected + peak * np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / width**2)
    return rng.poisson(expected).astype(np.float32), geometry


Runner = Callable[[str, "torch.Tensor"], "torch.Tensor"]


def measure_engines(run: Runner, engines: tuple[str, ...], timing_x: torch.Tensor,
                    check_x: Callable[[], tuple[torch.Tensor, torch.Tensor]], logit_cut: float,
                    *, repeats: int = 3, check_all: bool = False) -> list[EngineTiming]:
    """Time ``engines`` (``run(engine, x) -> logits``) on ``timing_x`` ``(1, C, h, w)``,
    interleaved, and compare the masks of those faster than fp32 with fp32's on the check
    input (``check_x() -> (x, static)``, made only when needed; ``check_all``: compare every
    engine that runs). An engine that raises is ``unavailable``; one that is more than twice
    as slow as the fastest after its first timed pass is dropped from the later passes. The
    chosen engine gets the note ``chosen``."""
    import torch

    timings = {e: EngineTiming(e) for e in engines}
    samples: dict[str, list[float]] = {}
    cuda = timing_x.device.type == "cuda"

    def timed(e: str) -> float:
        t0 = time.perf_counter()
        run(e, timing_x)
        if cuda:  # kernels run asynchronously: wait for them
            torch.cuda.synchronize(timing_x.device)
        return time.perf_counter() - t0

    with torch.inference_mode():
        for e in engines:  # warm-up: one-off kernel and plan creation
            try:
                timed(e)
                samples[e] = []
            except RuntimeError as exc:
                timings[e].note = f"unavailable: {str(exc).splitlines()[0][:120]}"
        for i in range(repeats):
            for e in list(samples):
                samples[e].append(timed(e))
            best = min(min(s) for s in samples.values())
            if i == 0:  # one pass of an engine far slower than the best is enough
                for e, s in list(samples.items()):
                    if s[0] > 2.0 * best:
                        timings[e].ms = 1000.0 * samples.pop(e)[0]
        for e, s in samples.items():
            timings[e].ms = 1000.0 * statistics.median(s)
        base = timings["fp32"].ms
        needs = [e for e in engines if e != "fp32" and (ms := timings[e].ms) is not None and (
            check_all or base is None or ms < base)]
        if needs:
            x, static = check_x()
            ref = _spots(run("fp32", x), static, logit_cut)
            timings["fp32"].agreement = 1.0
            for e in needs:
                timings[e].agreement = float((_spots(run(e, x), static, logit_cut) == ref)
                                             .float().mean())
    for e, t in timings.items():
        if t.note:
            continue
        if e != "fp32" and t.agreement is not None and t.agreement < MIN_AGREEMENT:
            t.note = "disagrees"
    usable = [t for t in timings.values() if not t.note and t.ms is not None and (
        t.engine == "fp32" or (t.agreement or 0.0) >= MIN_AGREEMENT)]
    best_engine = min(usable, key=lambda t: t.ms or 0.0).engine if usable else "fp32"
    for t in timings.values():
        if not t.note:
            t.note = "chosen" if t.engine == best_engine else "slower"
    return [timings[e] for e in engines]


def _spots(logits: torch.Tensor, static: torch.Tensor, logit_cut: float) -> torch.Tensor:
    return ((logits[:, 1].float() - logits[:, 0].float()) >= logit_cut) & ~static


def choose_engine(run: Runner, engines: tuple[str, ...], *, device: torch.device,
                  model_id: str, model_sha256: str,
                  check_x: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                  timing_x: torch.Tensor, logit_cut: float,
                  refresh: bool = False, check_all: bool = False) -> EngineChoice:
    """The cached choice for this machine and model, or a new measurement (`measure_engines`)
    that is cached; logged either way. ``refresh``: measure even when a choice is cached."""
    facts = machine_facts(device)
    key = choice_key(facts, model_sha256, model_id)
    cached = None if refresh else cached_choice(key)
    if cached is not None:
        log.info("xrd-mask: model %s on %s: %s", model_id, _where(facts), cached.describe())
        return cached
    t0 = time.perf_counter()
    timings = measure_engines(run, engines, timing_x, check_x, logit_cut,
                              check_all=check_all)
    chosen = next(t.engine for t in timings if t.note == "chosen") \
        if any(t.note == "chosen" for t in timings) else "fp32"
    choice = EngineChoice(chosen, key, "measured", timings, facts,
                          datetime.now(UTC).isoformat(timespec="seconds"))
    path = store_choice(choice)
    log.info("xrd-mask: model %s on %s: %s; measured in %.1f s%s", model_id, _where(facts),
             choice.describe(), time.perf_counter() - t0,
             f", cached in {path}" if path else "")
    return choice


def _where(facts: dict[str, Any]) -> str:
    return str(facts.get("gpu") or facts.get("cpu") or facts.get("device"))
