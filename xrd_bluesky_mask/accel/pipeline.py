"""`FastPipeline`: mask and integrate a batch of frames with the U-Net, on one torch device.

Per batch: frames are prepared on the CPU in a thread pool (pyFAI geometry, ring statistics:
numba releases the GIL) ▸ stacked in pinned memory ▸ copied to the device ▸ one network pass
over whole frames (channels-last, batch norm folded, bf16 autocast on a GPU) ▸ threshold on the
logit difference (no softmax) ▸ masked integration with `TorchIntegrator` on the device ▸ masks
and patterns copied back. Same masks as `UNetMasker.predict` (tested ≥ 99.99 % of pixels) and the
same patterns as pyFAI (tested to 1e-5 relative). On a CPU it runs the network in tiles through
the masker's fused oneDNN plan (`~xrd_bluesky_mask.masking.fused.FusedTUNet`) and integrates with
pyFAI, which measured faster there; the batch still shares preparation threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..geometry import Geometry, as_geometry
from ..integration import IntegrationSettings, Integrator
from ..masking.base import MaskResult
from ..masking.tiling import HaloPredictor
from ..pipeline import FrameResult
from .csr import TorchIntegrator


class FastPipeline:
    """Batched U-Net masking + masked integration of frames of one geometry.

    Parameters
    ----------
    masker
        A `UNetMasker` (its model, threshold and device are used); None = the default model.
    geometry
        The detector geometry (PONI path/text or `Geometry`).
    settings
        Integration settings (a CSR method).
    tile
        None = each frame in one network pass; an int = pieces of that many px with a ``halo``
        of context (same mask, less memory). ``"auto"``: whole frames on a GPU, 768 px pieces
        on the CPU (cache-friendly: 1.8 s against 3.2 s per 2880² frame on 2 cores).
    amp
        Autocast dtype on the device: ``"bf16"``, ``"fp16"`` or None (fp32). Default: bf16 on
        CUDA, fp32 on the CPU (this CPU class has no bf16 arithmetic: 6x slower there).
    integrate_on_device
        Integrate with `TorchIntegrator` on the device (``"auto"``: on a GPU) or with pyFAI on
        the CPU (faster there: 0.16 s against 0.38 s per 2880² frame on 2 cores).
    compile
        Wrap the network module in `torch.compile` (for GPUs; on this CPU class it measured
        no faster than eager, with or without freezing, after 20-40 s of compiling).
    workers
        CPU threads that prepare frames (default: one per frame of a batch, at most 8).
    """

    def __init__(self, masker: Any = None, geometry: Any = None, settings: IntegrationSettings
                 | None = None, *, tile: int | None | str = "auto", halo: int = 64,
                 amp: str | None = "auto", compile: bool = False,
                 integrate_on_device: bool | str = "auto", workers: int | None = None) -> None:
        import torch

        from ..masking.unet import UNetMasker

        self.masker = masker if masker is not None else UNetMasker()
        if not isinstance(self.masker, UNetMasker):
            raise TypeError(f"FastPipeline needs a UNetMasker, got {type(self.masker).__name__}")
        if geometry is None:
            raise ValueError("FastPipeline needs the detector geometry (a PONI file or text)")
        self.geometry: Geometry = as_geometry(geometry)
        self.device = self.masker.device
        cuda = self.device.type == "cuda"
        if integrate_on_device == "auto":
            integrate_on_device = cuda
        self.integrator: Any = (TorchIntegrator(self.geometry, settings, device=self.device)
                                if integrate_on_device else Integrator(self.geometry, settings))
        if tile == "auto":
            tile = None if cuda else 768
        if amp == "auto":
            amp = "bf16" if cuda and torch.cuda.is_bf16_supported() else None
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[amp]
        # torch.compile traces the module (the fused CPU plan calls oneDNN directly)
        self.net = torch.compile(self.masker.module) if compile else self.masker._net
        self.predictor = HaloPredictor(tile=tile, halo=halo,
                                       multiple=self.masker.model.card.architecture.size_multiple)
        t = self.masker.threshold
        self.logit_cut = math.log(t / (1.0 - t))
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def settings(self) -> dict[str, Any]:
        """Provenance of the fast path (the masker's, plus how it ran)."""
        return {**self.masker.settings(), "path": "fast", "amp": str(self.amp),
                "tiling_tile": self.predictor.tile, "tiling_halo": self.predictor.halo,
                "integrate_on_device": isinstance(self.integrator, TorchIntegrator)}

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.masker.inputs(frame, self.geometry)

    def process(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Mask and integrate ``frames`` (each ``(rows, cols)`` counts) as one batch."""
        import torch

        n = len(frames)
        if n == 0:
            return []
        t0 = time.perf_counter()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers or min(8, max(2, n)))
        prepared = list(self._pool.map(self._prepare, frames)) if n > 1 else [
            self._prepare(frames[0])]
        cuda = self.device.type == "cuda"
        on_device = isinstance(self.integrator, TorchIntegrator)
        keys = (2, 1, 0) if on_device else (2, 1)  # the frames only where integration runs
        x, st, *f = (torch.from_numpy(np.stack([p[k] for p in prepared])) for k in keys)
        if cuda:
            x, st, *f = (t.pin_memory() for t in (x, st, *f))
        x, st, *f = (t.to(self.device, non_blocking=True) for t in (x, st, *f))
        t1 = time.perf_counter()
        with torch.inference_mode():
            if self.amp is not None:
                with torch.autocast(self.device.type, dtype=self.amp):
                    logits = self.predictor(x, self.net)
            else:
                logits = self.predictor(x, self.net)
            spots = ((logits[:, 1] - logits[:, 0]) >= self.logit_cut) & ~st
            if cuda:
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            excluded = spots | st
            if on_device:
                patterns = self.integrator.integrate_batch(f[0], excluded)
            else:
                ex = excluded.cpu().numpy()
                patterns = [self.integrator.integrate(p[0], ex[i])
                            for i, p in enumerate(prepared)]
            t3 = time.perf_counter()
            spots_np = spots.cpu().numpy()
        t4 = time.perf_counter()
        share = 1.0 / n
        out = []
        for i, p in enumerate(prepared):
            timings = {"normalise": (t1 - t0) * share, "network": (t2 - t1) * share,
                       "integrate": (t3 - t2) * share, "copy_back": (t4 - t3) * share,
                       "total": (t4 - t0) * share}
            mask = MaskResult(spots=spots_np[i], static=p[1], timings=timings)
            out.append(FrameResult(mask=mask, pattern=patterns[i], timings=timings))
        return out

    def close(self) -> None:
        """Stop the preparation threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
