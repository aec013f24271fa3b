"""The worker's work items (a few bytes each, naming data that already lives in Tiled) and
its records of what it did with each run and frame."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CloseRun", "FrameItem", "FrameRecord", "OpenRun", "RunRecord", "RunSpec",
           "UseMasker"]


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
class UseMasker:
    """Switch to ``masker`` (queued by `Worker.set_masker`, applied in order)."""

    masker: Any


@dataclass
class FrameRecord:
    """One processed frame: fractions (of all pixels) and seconds per stage."""

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
