"""`UNetMasker`: the dlsia U-Net run over a frame's scale-free input channels.

normalise (``preprocess.network_input``) ▸ tiles (qlty windows, or halo tiles) ▸ network
(CPU or GPU, batched) ▸ stitch ▸ softmax ▸ threshold ▸ decision step (`decision`: spots
grown into their wings, extreme pixels of their ring, as the model card says). Optional
test-time augmentation averages the probability over the 8 rotations/flips of the frame. On a
CPU the network runs as a fused oneDNN plan of the same weights (`fused.FusedTUNet`, about 1.5x
faster).

`UNetMasker.predict_batch` is the fast path the pipeline uses: frames prepared in threads
(numba and pyFAI release the GIL) ▸ stacked (pinned memory on a GPU) ▸ one network pass over
the batch in the policy's precision and tiling ▸ threshold on the logit difference (no
softmax, no probability image) ▸ the same decision step. Same masks as `predict` (tested
≥ 99.99 % of pixels).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry import Geometry
from ..models.network import fold_batchnorm
from ..protocols import ExecutionPolicy, MaskResult
from .decision import DecisionRule, decide
from .engine_nets import EngineNets
from .engines import EngineChoice, candidate_engines, check_frame, choose_engine
from .fused import fuse_tunet
from .preprocess import SECTOR_ARC_PX, network_input, prepare_frame
from .rings import LocalStats, local_stats, ring_stats
from .settings import UNetSettings
from .tiling import CandidateRule, HaloPredictor, QuiltPredictor

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
        How fp32 runs: ``"fused"`` (the `FusedTUNet` plan: CPU only), ``"module"`` (the dlsia
        module as it is) or ``"auto"`` (fused where it applies, else the module).
    precision
        The network's engine (`engines.ENGINES`: ``"fp32"``, ``"bf16"``, ``"bf16-fused"``,
        ``"fp16"``), or ``"auto"``: the fastest on this machine whose masks agree with
        fp32's, measured on first use and cached per machine and model (`engine_choice`).
    candidates
        Run the network only where spots can be (`tiling.CandidateRule`: blocks with a strong
        ring-relative excess, halo inference only) and call the rest of the frame "no spot":
        ``"fast"`` on the fast path (`predict_batch`) only, ``"on"`` in `predict` too (its
        probability is then 0 where the network did not run), ``"off"`` nowhere (the
        default). On the held-out frames it left pixel recall and TNR unchanged, but on a CPU
        finding the candidates costs about as much as the skipped network work saves
        (README, "Performance").
    settings
        All of the above as one validated `UNetSettings` (the CLI builds one); given, the
        keyword options are not read.

    Raises
    ------
    ValueError
        An option out of range or unknown (pydantic's message names it).
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
        precision: str = "auto",
        candidates: str = "off",
        decision: DecisionRule | None = None,
        settings: UNetSettings | None = None,
    ) -> None:
        from ..models.registry import active_model_dir
        from ..models.store import LoadedModel, load_model

        if settings is None:  # the options, checked once (pydantic: a ValueError names them)
            settings = UNetSettings.model_validate({
                "threshold": threshold, "inference": inference, "tta": tta, "device": device,
                "window": window, "step": step, "border": border, "batch_size": batch_size,
                "engine": engine, "precision": precision, "candidates": candidates})
        self.options = settings
        s = settings
        device, threshold, inference, precision, candidates = (
            s.device, s.threshold, s.inference, s.precision, s.candidates)
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
        engine = s.engine
        self.module = fold_batchnorm(self.model.net)
        plan = fuse_tunet(self.module) if engine != "module" else None
        if engine == "fused" and plan is None:
            raise ValueError("the fused engine needs a dlsia TUNet on the CPU with oneDNN "
                             "(use engine='module' or 'auto')")
        if self.device.type == "cpu":
            from ..malloc import retain_freed_memory

            retain_freed_memory()  # feature maps reused, not page-faulted in anew (1.3x here)
        self.engine = "fused" if plan is not None else "module"
        self._precision = precision
        self._choice: EngineChoice | None = None
        self._choice_lock = threading.Lock()
        self._nets = EngineNets(self.module, plan if plan is not None else self.module,
                                self.device.type)
        self.threshold = float(threshold if threshold is not None else self.model.card.threshold)
        self.decision = (decision if decision is not None
                         else DecisionRule.from_dict(self.model.card.decision))
        self.candidates = candidates if inference == "halo" else "off"
        rule = CandidateRule() if self.candidates != "off" else None
        self._rule = rule
        if inference == "quilt":
            self.predictor: Any = QuiltPredictor(s.window, s.step, s.border, s.batch_size)
        elif inference == "halo":
            self.predictor = HaloPredictor(multiple=self.model.card.architecture.size_multiple,
                                           candidates=rule if candidates == "on" else None)
        self.inference, self.tta = inference, s.tta
        self._pool: ThreadPoolExecutor | None = None
        self._halo: dict[tuple[int | None, int], HaloPredictor] = {}
        #: share of the pixels of the last `predict_batch` call the network ran on
        self.network_coverage = 1.0

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return next(self.model.net.parameters()).device

    def settings(self) -> dict[str, Any]:
        """Provenance: model id and checksum, threshold, inference strategy, engine."""
        card = self.model.card
        return {
            "masker": self.name,
            "model_id": card.model_id,
            "model_sha256": card.sha256,
            "threshold": self.threshold,
            "decision": self.decision.to_dict() if self.decision.active else "off",
            "tta": self.tta,
            "device": str(self.device),
            "engine": self.engine,
            "precision": self.precision,
            "candidates": self.candidates,
            **({"candidate_rule": self._rule.settings()} if self._rule else {}),
            **{f"tiling_{k}": v for k, v in self.predictor.settings().items()},
        }

    def probability(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Spot probability float32 ``(rows, cols)`` for network input ``x`` ``(C, rows, cols)``."""
        import torch

        timings = {"tile": 0.0, "network": 0.0, "stitch": 0.0}
        net = self.network(self.precision)
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

    def inputs(
        self, frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(frame32, static, x)``: the checked float32 frame, its static mask and the network
        input ``(C, rows, cols)`` that `predict` gives the network."""
        f32, static, x, _ = self.inputs_and_stats(frame, geometry, extra_static=extra_static)
        return f32, static, x

    def inputs_and_stats(
        self, frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, LocalStats]:
        """`inputs` and the ring and (ring, χ-sector) statistics the input was made from (the
        decision step compares pixels with the same local levels). Rings are the model
        card's ``input.ring_bin_px`` wide; the input holds the channels the card's ``input``
        names."""
        f32, static = prepare_frame(frame, geometry, extra_static=extra_static)
        valid = ~static & (f32 >= 0)
        ring = ring_stats(f32, valid, geometry, bin_px=self.model.card.input.ring_bin_px,
                          max_per_bin=256)
        stats = local_stats(f32, valid, geometry, ring, arc_px=SECTOR_ARC_PX)
        return (f32, static,
                network_input(f32, static, geometry, self.model.card.input, local=stats), stats)

    def warm(self, geometry: Geometry) -> None:
        """Build the geometry's ring and sector tables and input channels this masker uses
        (no network pass), so that the first frame does not wait for them."""
        self.inputs_and_stats(np.ones(geometry.shape, np.float32), geometry)

    def predict(
        self, frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
    ) -> MaskResult:
        """Mask one frame (``(rows, cols)`` counts) with its geometry."""
        t0 = time.perf_counter()
        f32, static, x, stats = self.inputs_and_stats(frame, geometry, extra_static=extra_static)
        t1 = time.perf_counter()
        prob, timings = self.probability(x)
        t2 = time.perf_counter()
        spots = decide((prob >= self.threshold) & ~static, f32, static, stats, self.decision)
        timings = {"normalise": t1 - t0, **timings, "decision": time.perf_counter() - t2}
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
            self.device.type, batchable=True, bf16=cuda and torch.cuda.is_bf16_supported(),
            preferred=self.precision)
        t0 = time.perf_counter()
        if len(frames) == 1:
            prepared = [self.inputs_and_stats(frames[0], geometry)]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(8, thread_name_prefix="xrd-mask-prepare")
            prepared = list(self._pool.map(lambda f: self.inputs_and_stats(f, geometry), frames))
        x = torch.from_numpy(np.stack([q[2] for q in prepared]))
        st = torch.from_numpy(np.stack([q[1] for q in prepared]))
        if cuda:
            x, st = x.pin_memory(), st.pin_memory()
        x, st = x.to(self.device, non_blocking=True), st.to(self.device, non_blocking=True)
        t1 = time.perf_counter()
        tile = None if p.tile == "auto" else p.tile  # resolved: never "auto"
        predictor = self._halo.get((tile, p.halo))
        if predictor is None:
            predictor = self._halo[(tile, p.halo)] = HaloPredictor(
                tile=tile, halo=p.halo, multiple=self.model.card.architecture.size_multiple,
                candidates=self._rule)
        with torch.inference_mode():
            logits = predictor(x, self.network(str(p.precision), compile=p.compile))
            self.network_coverage = predictor.coverage
            spots = ((logits[:, 1] - logits[:, 0]) >= self.logit_cut) & ~st
            spots_np = spots.cpu().numpy()
        t2 = time.perf_counter()
        decided = [decide(spots_np[i], q[0], q[1], q[3], self.decision)
                   for i, q in enumerate(prepared)]
        share = 1.0 / len(frames)
        timings = {"normalise": (t1 - t0) * share, "network": (t2 - t1) * share,
                   "decision": (time.perf_counter() - t2) * share}
        return [MaskResult(spots=spots, static=q[1], timings=dict(timings))
                for spots, q in zip(decided, prepared, strict=True)]

    @property
    def logit_cut(self) -> float:
        """The threshold as a cut on the logit difference (spot - background)."""
        t = self.threshold
        return math.log(t / (1.0 - t))

    @property
    def precision(self) -> str:
        """The engine the network runs in: the one asked for, or this machine's measured
        choice (`engine_choice`, on first use)."""
        return self._precision if self._precision != "auto" else self.engine_choice().engine

    def engine_choice(self, *, refresh: bool = False, check_all: bool = False) -> EngineChoice:
        """This machine's engine for this model (`engines.choose_engine`): cached, or measured
        now (a few seconds, once per machine and model) and cached. A forced ``precision``
        is returned as it is. ``refresh`` measures again; ``check_all`` compares the masks of
        every engine that runs with fp32's, not only of those faster than fp32."""
        if self._precision != "auto":
            return EngineChoice(self._precision, "", "forced")
        with self._choice_lock:
            if self._choice is None or refresh:
                import torch

                card = self.model.card
                cuda = self.device.type == "cuda"
                gen = torch.Generator().manual_seed(0)
                timing_x = torch.randn((1, len(card.input.channels), 256, 256), generator=gen)
                self._choice = choose_engine(
                    self.network_logits, candidate_engines(
                        self.device.type, bf16=cuda and torch.cuda.is_bf16_supported()),
                    device=self.device, model_id=card.model_id, model_sha256=card.sha256,
                    check_x=self._check_input, timing_x=timing_x.to(self.device),
                    logit_cut=self.logit_cut, refresh=refresh, check_all=check_all)
            return self._choice

    def _check_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The network input and static mask of `engines.check_frame`, on the device."""
        import torch

        frame, geometry = check_frame()
        _, static, x = self.inputs(frame, geometry)
        return (torch.from_numpy(x)[None].to(self.device),
                torch.from_numpy(static)[None].to(self.device))

    def network_logits(self, engine: str, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes, rows, cols)`` of input ``x`` with ``engine``, through the
        frame's halo tiles (all of them: no candidate rule)."""
        plain = HaloPredictor(multiple=self.model.card.architecture.size_multiple)
        return plain(x, self.network(engine))

    def network(self, engine: str, *, compile: bool = False) -> Any:
        """The network as a callable ``net(x) -> logits`` running in ``engine``
        (`engines.ENGINES`; `EngineNets`); ``compile`` wraps the module in ``torch.compile``.
        A RuntimeError where the engine cannot run here (``bf16-fused`` off the CPU)."""
        return self._nets.get(engine, compile=compile)
