"""The geometry check of a run's first frame, and what a run whose frames fit only turned becomes.

Once per run, on its first frame, the worker (and its Dask compute stage) asks whether the
PONI's rings fit the frame (orientation, beam centre: `xrd_bluesky_mask.azimuthal.
geometry_check`). The verdict goes to the run's record (and from there to its metadata); when
another orientation clearly fits, ``if_misoriented`` (one of `IF_MISORIENTED`) decides whether
the run is refused, masked turned, or masked as given with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .items import RunRecord, describe

if TYPE_CHECKING:
    from ..azimuthal.orientation import Orientation
    from .process import Pipeline

__all__ = ["IF_MISORIENTED", "check_run_geometry"]

log = logging.getLogger(__name__)

#: What becomes of frames (a run, a file) that fit the PONI only once turned: refused, masked
#: with the turned geometry, or masked with the PONI as given (the ``if_misoriented`` setting of
#: the live worker, reprocessing and ``xrd-mask predict``). Here, not beside the geometry check,
#: so that importing the live callback does not import pyFAI and xarray.
IF_MISORIENTED = ("refuse", "apply", "keep")


def check_run_geometry(run_uid: str, record: RunRecord, pipeline: Pipeline, frame: np.ndarray,
                       *, if_misoriented: str, turned: Callable[[Orientation], Pipeline]
                       ) -> Pipeline | None:
    """Once per run (``record.geometry_check`` unset), on its first frame: do the PONI's rings
    fit the frame? The verdict goes to ``record.geometry_check`` and a misfit to the log; when
    another orientation clearly fits, ``if_misoriented`` decides: ``"refuse"`` records the
    reason in ``record.run_errors``, ``"apply"`` masks with ``turned(orientation)``.

    Returns the pipeline to use from now on, or None when the run is refused (also when it was
    refused on an earlier frame).
    """
    from ..azimuthal.geometry_check import check_geometry

    if record.geometry_check is not None:
        return None if record.run_errors else pipeline
    try:
        verdict = check_geometry(frame, pipeline.geometry, orientation=pipeline.orientation)
    except Exception as exc:  # the check only advises: never fail a frame over it
        record.geometry_check = {"status": "not checked", "reason": describe(exc)}
        return pipeline
    record.geometry_check = verdict.as_metadata()
    warning = verdict.warning()
    better = verdict.better_orientation
    if better is not None and if_misoriented == "refuse":
        record.run_errors.append(
            f"refused: {warning} No mask was written for this run: `xrd-mask "
            f"reprocess {run_uid} --if-misoriented apply` masks it in the orientation "
            "that fits (live masking: if_misoriented='apply', or --if-misoriented apply).")
        log.error("xrd-mask: run %s %s", run_uid, record.run_errors[-1])
        return None
    if better is not None and if_misoriented == "apply":
        # a candidate orientation keeps the frame's shape (square frames only transpose)
        turn = turned(better)
        record.geometry_check = {
            **check_geometry(frame, turn.geometry, orientation=better).as_metadata(),
            "orientation_applied": better.name, "orientation_asked": pipeline.orientation.name,
            "first_verdict": verdict.as_metadata()}
        log.warning("xrd-mask: run %s: %s Masked in orientation %r instead (the rings are "
                    "sharper; if_misoriented='apply').", run_uid, warning, better.name)
        return turn
    if warning:
        log.warning("xrd-mask: run %s: %s", run_uid, warning)
    return pipeline
