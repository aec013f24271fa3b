"""`UNetMasker`: the dlsia U-Net run over a frame's scale-free input channels.

normalise (``preprocess.network_input``) ▸ tiles (qlty windows, or halo tiles) ▸ network
(CPU or GPU, batched) ▸ stitch ▸ softmax ▸ threshold. Optional test-time augmentation
averages the probability over the 8 rotations/flips of the frame. On a CPU the network runs
as a fused oneDNN plan of the same weights (`fused.FusedTUNet`, about 1.5x faster).

`UNetMasker.predict_batch` is the fast path the pipeline uses: frames prepared in threads
(numba and pyFAI release the GIL) ▸ stacked (pinned memory on a GPU) ▸ one network pass over
the batch in the policy's precision and tiling ▸ threshold on the logit difference (no
softmax, no probability image). Same masks as `predict` (tested ≥ 99.99 % of pixels).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry import Geometry
from ..models.network import fold_batchnorm
from ..protocols import ExecutionPolicy, MaskResult
from .fused import fuse_tunet
from .preprocess import network_input, prepare_frame
from .tiling import HaloPredictor, QuiltPredictor

if TYPE_CHECKING:
    import torch

    from ..models.store import LoadedModel

log = logging.getLogger(__name__)


def _dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """The k-th of the 8 rotations/flips of the last two axes (or its inverse)."""
    import torch

    rot, flip = k % 4, k >= 4
    if not inverse:
        x = torch.flip(x, dims=(-1,)) if flip else x
        return torch.rot90(x, rot, dims=(-2, -1))
    x = torch.rot90(x, -rot, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


class UNetMasker:
    """Spot masks from a trained dlsia U-Net.

    Parameters
    ----------
    model
        A model folder (``model_card.json`` + weights), ``"light"`` (the packaged lighter
        network), a registered model id or version, a `LoadedModel`, or None for the
        active model of the model registry (`xrd_bluesky_mask.models.registry`; the packaged
        default unless another version was activated).
    threshold
        Spot-probability cut in (0, 1); None uses the one chosen at training (model card).
    inference
        ``"halo"`` (whole frame in large tiles with context; fast) or ``"quilt"`` (the
        paper's 256x256 qlty windows; the reference path).
    tta
        Average over the 8 rotations/flips (8x slower, slightly smoother probabilities).
    device
        torch device string; None picks CUDA when usable, else the CPU.
    window, step, border, batch_size
        qlty window size, step and ignored border (px) and windows per batch (quilt only).
    engine
        How the network runs: ``"fused"`` (the `FusedTUNet` plan: CPU only), ``"module"``
        (the dlsia module as it is) or ``"auto"`` (fused where it applies, else the module).
    """

    name = "unet"

    def __init__(
        self,
        model: str | Path | LoadedModel | None = None,
        *,
        threshold: float | None = None,
        inference: str = "halo",
        tta: bool = False,
        device: str | None = None,
        window: int = 256,
        step: int = 192,
        border: int = 32,
        batch_size: int = 16,
        engine: str = "auto",
    ) -> None:
        from ..models.registry import active_model_dir
        from ..models.store import LoadedModel, load_model

        if model is None:
            model = active_model_dir()
        elif isinstance(model, str) and not Path(model).exists():
            from ..errors import ModelError
            from ..models.registry import ModelRegistry
            from ..models.store import packaged_model_dir

            try:  # a registered id or version number
                model = ModelRegistry().get(model).path
            except ModelError:  # or a packaged model ("light")
                packaged = packaged_model_dir(model)
                if packaged is None:
                    raise
                model = packaged
        self.model = model if isinstance(model, LoadedModel) else load_model(model, device)
        if engine not in ("auto", "fused", "module"):
            raise ValueError(f"engine must be 'auto', 'fused' or 'module', got {engine!r}")
        self.module = fold_batchnorm(self.model.net)
        plan = fuse_tunet(self.module) if engine != "module" else None
        if engine == "fused" and plan is None:
            raise ValueError("the fused engine needs a dlsia TUNet on the CPU with oneDNN "
                             "(use engine='module' or 'auto')")
        if self.device.type == "cpu":
            from ..malloc import retain_freed_memory

            retain_freed_memory()  # feature maps reused, not page-faulted in anew (1.3x here)
        self._net: Any = plan if plan is not None else self.module
        self.engine = "fused" if plan is not None else "module"
        if threshold is not None and not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold if threshold is not None else self.model.card.threshold)
        if inference == "quilt":
            self.predictor: Any = QuiltPredictor(window, step, border, batch_size)
        elif inference == "halo":
            self.predictor = HaloPredictor(multiple=self.model.card.architecture.size_multiple)
        else:
            raise ValueError(f"inference must be 'halo' or 'quilt', got {inference!r}")
        self.inference, self.tta = inference, tta
        self._pool: ThreadPoolExecutor | None = None
        self._compiled: Any = None
        self._halo: dict[tuple[int | None, int], HaloPredictor] = {}

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return next(self.model.net.parameters()).device

    def settings(self) -> dict[str, Any]:
        """Provenance: model id and checksum, threshold, inference strategy."""
        card = self.model.card
        return {
            "masker": self.name,
            "model_id": card.model_id,
            "model_sha256": card.sha256,
            "threshold": self.threshold,
            "tta": self.tta,
            "device": str(self.device),
            "engine": self.engine,
            **{f"tiling_{k}": v for k, v in self.predictor.settings().items()},
        }

    def probability(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Spot probability float32 ``(rows, cols)`` for network input ``x`` ``(C, rows, cols)``."""
        import torch

        timings = {"tile": 0.0, "network": 0.0, "stitch": 0.0}
        net = self._net
        xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(self.device)
        prob = None
        with torch.inference_mode():
            for k in range(8 if self.tta else 1):
                logits = self.predictor(_dihedral(xt, k), net)
                for key, val in self.predictor.timings.items():
                    timings[key] += val
                p = torch.softmax(_dihedral(logits, k, inverse=True), dim=1)[0, 1]
                prob = p if prob is None else prob + p
        assert prob is not None  # one view at least
        prob = prob / (8 if self.tta else 1)
        return prob.float().cpu().numpy(), timings

    @staticmethod
    def inputs(
        frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(frame32, static, x)``: the checked float32 frame, its static mask and the network
        input ``(C, rows, cols)`` that `predict` gives the network."""
        f32, static = prepare_frame(frame, geometry, extra_static=extra_static)
        return f32, static, network_input(f32, static, geometry)

    def predict(
        self, frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
    ) -> MaskResult:
        """Mask one frame (``(rows, cols)`` counts) with its geometry."""
        t0 = time.perf_counter()
        _, static, x = self.inputs(frame, geometry, extra_static=extra_static)
        t1 = time.perf_counter()
        prob, timings = self.probability(x)
        t2 = time.perf_counter()
        spots = (prob >= self.threshold) & ~static
        timings = {"normalise": t1 - t0, **timings, "threshold": time.perf_counter() - t2}
        return MaskResult(spots=spots, static=static, probability=prob, timings=timings)

    def predict_batch(self, frames: Sequence[np.ndarray], geometry: Geometry, *,
                      policy: ExecutionPolicy | None = None) -> list[MaskResult]:
        """Mask several frames of one geometry in one network pass (see the module docstring).

        ``policy`` sets tiling, halo, precision and compilation (None: the defaults for this
        device). Quilt inference and test-time augmentation go frame by frame through
        `predict`, so the masker's settings always hold. ``probability`` is None.
        """
        import torch

        if len(frames) == 0:
            return []
        if self.inference != "halo" or self.tta:
            return [self.predict(f, geometry) for f in frames]
        cuda = self.device.type == "cuda"
        p = (policy or ExecutionPolicy()).resolved(
            self.device.type, batchable=True, bf16=cuda and torch.cuda.is_bf16_supported())
        t0 = time.perf_counter()
        if len(frames) == 1:
            prepared = [self.inputs(frames[0], geometry)]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(8, thread_name_prefix="xrd-mask-prepare")
            prepared = list(self._pool.map(lambda f: self.inputs(f, geometry), frames))
        x, st = (torch.from_numpy(np.stack([q[k] for q in prepared])) for k in (2, 1))
        if cuda:
            x, st = x.pin_memory(), st.pin_memory()
        x, st = x.to(self.device, non_blocking=True), st.to(self.device, non_blocking=True)
        t1 = time.perf_counter()
        tile = None if p.tile == "auto" else p.tile  # resolved: never "auto"
        predictor = self._halo.get((tile, p.halo))
        if predictor is None:
            predictor = self._halo[(tile, p.halo)] = HaloPredictor(
                tile=tile, halo=p.halo, multiple=self.model.card.architecture.size_multiple)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(p.precision))
        t = self.threshold
        logit_cut = math.log(t / (1.0 - t))
        with torch.inference_mode():
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                logits = predictor(x, self._network(p.compile))
            spots = ((logits[:, 1] - logits[:, 0]) >= logit_cut) & ~st
            spots_np = spots.cpu().numpy()
        share = 1.0 / len(frames)
        timings = {"normalise": (t1 - t0) * share,
                   "network": (time.perf_counter() - t1) * share}
        return [MaskResult(spots=spots_np[i], static=q[1], timings=dict(timings))
                for i, q in enumerate(prepared)]

    def _network(self, compile: bool) -> Any:
        """The network to run: the fused/module one, or ``torch.compile`` of the module."""
        if not compile:
            return self._net
        if self._compiled is None:
            import torch

            self._compiled = torch.compile(self.module)
        return self._compiled
