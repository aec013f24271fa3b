"""Frames ▸ masker ▸ masked integration, for any masker, and the background worker.

`Pipeline` masks and integrates frames of one geometry (batches for maskers that can take
them); `Worker` (`pipeline.worker`) drains work items (read from a `FrameSource`, compute
through a `Pipeline`, write to a `ResultSink`) in background threads for the live callback and
reprocessing. The names load on first use, so importing the worker (and the callback) does not
import xarray, pyFAI or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..protocols import ExecutionPolicy

if TYPE_CHECKING:
    from .process import FrameResult, Pipeline, process_frame

__all__ = ["ExecutionPolicy", "FrameResult", "Pipeline", "process_frame"]


def __getattr__(name: str) -> Any:
    if name in ("FrameResult", "Pipeline", "process_frame"):
        return getattr(importlib.import_module(".process", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
