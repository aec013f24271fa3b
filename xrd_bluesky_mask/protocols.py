"""The seams of the package: what a masker, a frame source and a result sink must offer.

Everything here depends on numpy alone, so plugins, callbacks and remote workers can type
against it without importing torch, pyFAI or tiled. Each protocol has a real implementation
and a simple one, and the code calls exactly these methods:

- `Masker`: `masking.unet.UNetMasker`; simple: `masking.classical.RingOutlierMasker`.
- `BatchMasker` (optional capability): `masking.unet.UNetMasker`; any other `Masker` is
  called frame by frame by the pipeline.
- `FrameSource`: `tiled.frames.TiledFrameSource`; simple: `tiled.frames.InMemoryFrameSource`.
- `ResultSink`: `sinks.tiled.TiledResultSink`; simple: `sinks.memory.InMemoryResultSink`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .geometry import Geometry
    from .spots import FrameTables


class MaskCode(enum.IntEnum):
    """Values of a stored uint8 mask; non-zero means "exclude", as in pyFAI and Dioptas."""

    #: a valid pixel, kept in the pattern
    KEEP = 0
    #: a single-crystal spot (or outlier) found by the masker
    SPOT = 1
    #: invalid whatever the frame shows: detector gaps and mask, flag values, NaN
    STATIC = 2
    #: the frame's result does not exist (yet): not computed, or its computation failed
    NOT_COMPUTED = 3
    #: annotations only: a pixel nobody has checked (left out of training)
    NOT_ANNOTATED = 255

    @classmethod
    def result_codes(cls) -> dict[int, str]:
        """``{value: name}`` of the codes a result mask can hold (stored as metadata)."""
        return {int(c): c.label for c in (cls.KEEP, cls.SPOT, cls.STATIC, cls.NOT_COMPUTED)}

    @classmethod
    def annotation_codes(cls) -> dict[int, str]:
        """``{value: name}`` of the codes an annotation mask can hold."""
        return {int(c): c.label for c in (cls.KEEP, cls.SPOT, cls.STATIC, cls.NOT_ANNOTATED)}

    @property
    def label(self) -> str:
        """``"keep"``, ``"spot"``, ``"static"``, ``"not computed"``, ``"not annotated"``."""
        return self.name.lower().replace("_", " ")


def encode_mask(spots: np.ndarray, static: np.ndarray) -> np.ndarray:
    """uint8 `MaskCode` image from bool ``spots`` and ``static`` ``(rows, cols)`` (static wins
    where both are set)."""
    codes = np.zeros(np.shape(spots), dtype=np.uint8)
    codes[np.asarray(spots, dtype=bool)] = MaskCode.SPOT
    codes[np.asarray(static, dtype=bool)] = MaskCode.STATIC
    return codes


@dataclass
class MaskResult:
    """What a masker found in one frame.

    Attributes
    ----------
    spots
        bool ``(rows, cols)``: True where a single-crystal spot (or outlier) was found.
    static
        bool ``(rows, cols)``: True where the pixel is invalid whatever the frame shows
        (detector gaps and mask, flag/dummy values, NaN/inf). Reported apart from spots.
    probability
        float32 ``(rows, cols)`` spot probability in [0, 1], or None (model-free maskers, and
        batched U-Net runs, which threshold the logits directly).
    timings
        Seconds spent per stage (e.g. ``{"normalise": 0.05, "network": 1.2}``).
    """

    spots: np.ndarray
    static: np.ndarray
    probability: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        """bool ``(rows, cols)``, True = exclude from integration (spots OR static)."""
        return self.spots | self.static

    @property
    def codes(self) -> np.ndarray:
        """uint8 `MaskCode` image ``(rows, cols)``: 0 keep, 1 spot, 2 static."""
        return encode_mask(self.spots, self.static)

    @property
    def spot_fraction(self) -> float:
        """Fraction of valid (non-static) pixels masked as spots."""
        valid = int((~self.static).sum())
        return float((self.spots & ~self.static).sum()) / max(valid, 1)


#: Network tile on a CPU, px: cache-friendly (1.8 s against 3.2 s per 2880² frame on 2 cores).
CPU_TILE_PX = 768
#: Frames per batch on a GPU (one network pass and one copy per batch).
GPU_BATCH = 4
#: The network's engines (numeric precision and kernels) an `ExecutionPolicy` can ask for.
Precision = Literal["fp32", "bf16", "bf16-fused", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class ExecutionPolicy:
    """How frames are run through a masker: device-side choices in one place.

    Every field may be ``"auto"``; `resolved` decides them for the masker's device
    (`xrd_bluesky_mask.pipeline.policy.resolve` does it for a masker and logs the choice).

    Attributes
    ----------
    batch
        Frames masked together (``"auto"``: 4 on a GPU, 1 on a CPU, 1 for maskers without
        `BatchMasker.predict_batch`).
    tile
        Network pieces, px: None = whole frames; an int = tiles of that size with ``halo``
        px of context (same mask, less memory). ``"auto"``: whole frames on a GPU, 768 px on
        the CPU (cache-friendly there).
    halo
        Context around each tile, px (at least the network's receptive radius, 53 px).
    precision
        The network's engine: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast on the device),
        ``"bf16-fused"`` (the fused oneDNN plan in bf16, CPUs with bf16 kernels); ``"auto"``:
        the masker's own choice (the U-Net measures its engines once per machine and model,
        `xrd_bluesky_mask.masking.engines`), else bf16 on a GPU that has it, fp32 elsewhere.
    integrate_on_device
        Masked integration as a torch sparse product on the masker's device (True) or with
        pyFAI on the CPU (False); ``"auto"``: on a GPU.
    compile
        Wrap the network in ``torch.compile`` (GPUs; measured no faster on CPUs).
    """

    batch: int | Literal["auto"] = "auto"
    tile: int | None | Literal["auto"] = "auto"
    halo: int = 64
    precision: Precision | Literal["auto"] = "auto"
    integrate_on_device: bool | Literal["auto"] = "auto"
    compile: bool = False

    def resolved(self, device: str, *, batchable: bool, bf16: bool,
                 preferred: str | None = None) -> ExecutionPolicy:
        """The same policy with every ``"auto"`` decided for a masker on ``device``
        (``"cuda"``, ``"cpu"``…) that can (``batchable``) or cannot mask batches, on hardware
        with or without fast ``bf16``; ``preferred``: the masker's own engine choice."""
        gpu = device == "cuda"
        batch = self.batch
        if batch == "auto":
            batch = GPU_BATCH if gpu and batchable else 1
        elif not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be 'auto' or an int >= 1, got {batch!r}")
        precision = self.precision
        if precision == "auto":
            precision = preferred or ("bf16" if gpu and bf16 else "fp32")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'auto' or one of {', '.join(PRECISIONS)}, "
                             f"got {precision!r}")
        return ExecutionPolicy(
            batch=batch,
            tile=(None if gpu else CPU_TILE_PX) if self.tile == "auto" else self.tile,
            halo=self.halo, precision=cast(Precision, precision),
            integrate_on_device=(gpu if self.integrate_on_device == "auto"
                                 else bool(self.integrate_on_device)),
            compile=self.compile)

    def describe(self, *, network: bool = True) -> str:
        """One line for logs and benchmark tables (of a resolved policy); ``network=False``
        for a masker without a network (classical), to which tiles and precision do not
        apply."""
        where = "torch integration on the device" if self.integrate_on_device is True \
            else "pyFAI"
        if not network:
            return f"batch {self.batch}, whole frames (no network), {where}"
        pieces = "whole frames" if self.tile is None else f"{self.tile} px tiles"
        return (f"batch {self.batch}, {pieces} (halo {self.halo} px), {self.precision}, "
                f"{where}" + (", compiled" if self.compile else ""))


@runtime_checkable
class Masker(Protocol):
    """Finds single-crystal spots in a powder-diffraction frame.

    Example
    -------
    >>> result = masker.predict(frame, geometry)   # doctest: +SKIP
    >>> result.mask.shape == frame.shape
    True
    """

    name: str

    def predict(self, frame: np.ndarray, geometry: Geometry, *,
                extra_static: np.ndarray | None = None) -> MaskResult:
        """Mask one frame (``(rows, cols)``, counts, any real dtype) with its geometry.

        ``extra_static``: bool ``(rows, cols)``, pixels to exclude beyond what the frame and
        the geometry's detector mask say (a user's mask file)."""
        ...

    def settings(self) -> dict[str, Any]:
        """JSON-able settings recorded as provenance next to every mask."""
        ...


@runtime_checkable
class BatchMasker(Masker, Protocol):
    """A masker that masks several frames of one geometry in one pass (an optional
    capability: the pipeline loops over `Masker.predict` for maskers without it)."""

    def predict_batch(self, frames: Sequence[np.ndarray], geometry: Geometry, *,
                      policy: ExecutionPolicy | None = None) -> list[MaskResult]:
        """One `MaskResult` per frame, in order (``probability`` may be None)."""
        ...


@runtime_checkable
class FrameSource(Protocol):
    """Reads one detector frame of a run (waiting until it is readable, within limits)."""

    def read(self, run_uid: str, stream: str, field: str, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) of ``field`` in ``stream`` of run ``run_uid``, 2D counts."""
        ...

    def forget(self, run_uid: str) -> None:
        """Drop what is cached for ``run_uid`` (called when the run's results are closed)."""
        ...


@runtime_checkable
class ResultSink(Protocol):
    """Receives the results of source runs, frame by frame, and knows what it holds.

    Every storage (`xrd_bluesky_mask.sinks`) offers exactly these calls, and so does every
    wrapper around one (`xrd_bluesky_mask.sinks.base.SinkWrapper`): the worker, the journal and
    reprocessing call nothing else on a sink they are given."""

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Start (or resume) the results of ``source_uid`` with provenance ``metadata``."""
        ...

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """Store frame ``index``: uint8 `MaskCode` image ``(rows, cols)``, its 1D pattern
        (an ``xarray.DataArray`` over 2θ/q with a ``sigma`` coordinate) and its ``tables``
        (spot table, summary and texture rows of frame ``index``; None: none computed).
        Writing a frame again replaces its mask, pattern and table rows."""
        ...

    def annotate(self, source_uid: str, fields: dict[str, Any]) -> None:
        """Progress fields for the run's metadata (lag, results waiting, the scan's exit
        status, ``n_frames``), stored with the next progress; ignored for a run not open."""
        ...

    def done(self, source_uid: str) -> set[int]:
        """Indices of the frames of ``source_uid`` whose results are stored (from earlier
        sessions too, once `open_run` resumed them): what resuming skips. Empty for a run not
        open here."""
        ...

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """Finish the run: ``status`` and the failed frames (index → message; ``"run"`` for
        run-level failures)."""
        ...
