"""The worker's work items (a few bytes each, naming data that already lives in Tiled) and
its records of what it did with each run and frame."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..protocols import Masker

if TYPE_CHECKING:  # xarray loads with the first run, not on import
    from .process import FrameResult

__all__ = ["CloseRun", "Computed", "Failure", "FrameItem", "FrameRead", "FrameRecord", "OpenRun",
           "Opened", "RunRecord", "RunSpec", "ToCompute", "ToWrite", "UseMasker", "WarmGeometry",
           "WorkItem", "describe"]


@dataclass(frozen=True)
class RunSpec:
    """What the callback learned about a run from its start and descriptor documents.

    Attributes
    ----------
    uid
        Start-document uid of the source run.
    stream, field
        Where the frames are (e.g. ``"primary"``, ``"det"``).
    poni
        PONI text of the geometry, or None when none was found.
    shape
        Frame ``(rows, cols)`` in pixels (from the descriptor).
    frames_expected
        ``num_points`` of the start document, or None.
    geometry_source
        Where the PONI came from: ``"callback"``, ``"start:xrd_mask_poni"`` or
        ``"configuration:DEVICE.KEY"``.
    """

    uid: str
    stream: str
    field: str
    poni: str | None
    shape: tuple[int, int] | None
    frames_expected: int | None = None
    geometry_source: str = ""


@dataclass(frozen=True)
class OpenRun:
    """Start the results of a run."""

    spec: RunSpec


@dataclass(frozen=True)
class FrameItem:
    """Process frame ``index`` (0-based row in Tiled) of a run."""

    run_uid: str
    stream: str
    field: str
    index: int
    # dataclasses.field: in this class body `field` names the attribute above
    t_submitted: float = dataclasses.field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class CloseRun:
    """The run's stop document arrived: finish its results after its frames.

    ``exit_status`` and ``reason`` are the stop document's (``"reprocess"`` when reprocessing);
    ``n_frames`` is how many frames the source has (None: as many as were submitted), the rows
    the result arrays end with."""

    run_uid: str
    exit_status: str = "success"
    reason: str = ""
    n_frames: int | None = None


@dataclass(frozen=True)
class WarmGeometry:
    """Build a geometry's integration engine and tables now, before its run's first frame.

    Sent when a run's start document already names its PONI and frame shape: its descriptor,
    which opens the run, comes only with the first frame, and at 2880x2880 px the engine alone
    takes about 3 s to build. A geometry already warm costs nothing."""

    run_uid: str
    poni: str
    shape: tuple[int, int] | None = None
    source: str = ""


@dataclass(frozen=True)
class UseMasker:
    """Switch to ``masker`` (queued by `Worker.set_masker`, applied in order)."""

    masker: Masker


#: What `Worker.submit` takes.
WorkItem: TypeAlias = "OpenRun | FrameItem | CloseRun | UseMasker | WarmGeometry"


def describe(exc: BaseException) -> str:
    """``"TypeName: text"``: an error as recorded for a frame or run, and logged."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Failure:
    """Why a frame could not be read or computed, or a run not opened: the error raised."""

    error: BaseException

    @property
    def message(self) -> str:
        """``"TypeName: text"``, as recorded for the frame or run."""
        return describe(self.error)


@dataclass(frozen=True)
class FrameRead:
    """The read stage's hand-off: the frame of ``item`` and the seconds its read took, or why
    it could not be read."""

    item: FrameItem
    frame: np.ndarray | Failure
    seconds: float = 0.0


@dataclass(frozen=True)
class Opened:
    """The compute stage's hand-off for an `OpenRun`: the run's provenance metadata (its
    pipeline is ready), or why the run could not be opened."""

    item: OpenRun
    metadata: dict[str, Any] | Failure


@dataclass(frozen=True)
class Computed:
    """The compute stage's hand-off for a frame: its `FrameResult`, or why there is none;
    ``read_s`` the seconds its read took, ``batch`` how many frames were masked with it."""

    item: FrameItem
    result: FrameResult | Failure
    read_s: float = 0.0
    batch: int = 1


#: What the read stage hands to the compute stage (None: stop).
ToCompute: TypeAlias = "FrameRead | OpenRun | CloseRun | UseMasker | WarmGeometry | None"
#: What the compute stage hands to the write stage (None: stop).
ToWrite: TypeAlias = "Computed | Opened | CloseRun | UseMasker | WarmGeometry | None"


@dataclass
class FrameRecord:
    """One processed frame: ``spot_fraction`` of its valid (non-static) pixels, as
    `MaskResult.spot_fraction`; ``static_fraction`` of all its pixels; seconds per stage."""

    index: int
    spot_fraction: float = 0.0
    static_fraction: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunRecord:
    """What the worker did with one run (kept in `Worker.records`)."""

    spec: RunSpec | None = None
    frames: dict[int, FrameRecord] = field(default_factory=dict)
    run_errors: list[str] = field(default_factory=list)
    sink_failed: bool = False
    journal_full: bool = False
    #: `GeometryVerdict.as_metadata()` of the run's first frame (None until it is computed).
    geometry_check: dict[str, Any] | None = None
    geometry_noted: bool = False
    status: str = "queued"
    exit_status: str | None = None
    t_open: float | None = None
    t_close: float | None = None

    @property
    def errors(self) -> dict[int, str]:
        """Failed frames: index → message."""
        return {i: r.error for i, r in sorted(self.frames.items()) if r.error}

    @property
    def done(self) -> list[int]:
        """Indices of the frames processed and written."""
        return sorted(i for i, r in self.frames.items() if r.error is None)
