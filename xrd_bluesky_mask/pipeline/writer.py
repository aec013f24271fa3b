"""The worker's write stage: each run's results into the `ResultSink`, its status into its record.

The `Worker`'s write thread hands every `Opened`, `Computed` and `CloseRun` (in the run's order)
to a `ResultWriter`. It opens the run's results in the sink, writes each frame's mask, pattern
and tables, and closes the run with its status (``complete``, ``complete_with_errors``,
``failed``, or ``aborted`` for a scan that stopped with another exit status than ``success``,
whose stop document's exit status and reason are recorded as ``scan_exit_status``,
``scan_reason``). Failures are recorded on the run's `RunRecord` (and logged), never raised: a
failing frame is recorded (index → error) and the others go on.

With a `Journal` the sink is a `JournaledSink`: every result is kept on disk first, then written
by its own thread with back-off through outages of the store, and replayed after a restart
(`xrd_bluesky_mask.sinks.journaled`). How far the worker is behind the scan is reported on the
derived node and in the log (`xrd_bluesky_mask.pipeline.lag`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np

from ..errors import JournalFull
from ..protocols import ResultSink
from .items import CloseRun, Computed, Failure, FrameRecord, Opened, RunRecord, describe
from .lag import LagMeter

__all__ = ["Listener", "ResultWriter"]

#: Told ``(run uid, frame index, its summary row)`` once a frame's results are handed to the
#: sink (the row: `xrd_bluesky_mask.spots.summary.SUMMARY_COLUMNS`; empty without tables),
#: and ``(run uid, None, {"status": ...})`` once the run is closed. Called on the write thread.
Listener: TypeAlias = "Callable[[str, int | None, dict[str, Any]], None]"

# the worker's log: ``xrd-mask watch`` sets its level by this name
log = logging.getLogger("xrd_bluesky_mask.pipeline.worker")


class ResultWriter:
    """Writes a worker's results to ``sink`` and keeps ``records`` (shared with the worker).

    Parameters
    ----------
    sink
        Where the results go (a `JournaledSink` with a journal).
    records
        run uid → `RunRecord`, the worker's.
    lag
        The worker's `LagMeter`: each frame written is its progress report.
    compute_threads
        Threads masking frames now (the lag report's workers).
    forget
        Called with a run's uid once it closes, before the listeners hear of it (the worker
        drops the run's pipeline and what its source kept).
    """

    def __init__(self, sink: ResultSink, records: dict[str, RunRecord], lag: LagMeter, *,
                 compute_threads: Callable[[], int], forget: Callable[[str], None]) -> None:
        self.sink, self.records, self.lag = sink, records, lag
        self.compute_threads, self.forget = compute_threads, forget
        self.listeners: list[Listener] = []

    def notify(self, run_uid: str, index: int | None, payload: dict[str, Any]) -> None:
        """Tell every listener; one that raises is logged and kept."""
        for listener in list(self.listeners):
            try:
                listener(run_uid, index, payload)
            except Exception:
                log.exception("xrd-mask: a result listener failed on run %s", run_uid)

    def open(self, opened: Opened) -> None:
        """The run is running: its results opened in the sink (or why not, on its record)."""
        uid = opened.item.spec.uid
        record = self.records[uid]
        record.status = "running"
        if isinstance(opened.metadata, Failure):
            record.run_errors.append(opened.metadata.message)
            return
        try:
            self.sink.open_run(uid, opened.metadata)
        except Exception as exc:
            log.error("xrd-mask: results of run %s cannot be written (%s); recover them "
                      "with `xrd-mask reprocess %s` once the result store accepts them",
                      uid, describe(exc), uid)
            record.sink_failed = True
            record.run_errors.insert(0, f"results not written: {describe(exc)}")

    def frame(self, computed: Computed) -> None:
        """A frame's results into the sink, its timings and outcome onto the run's record, and
        the run's progress (lag, first geometry verdict) onto its metadata."""
        item = computed.item
        record = self.records.setdefault(item.run_uid, RunRecord())
        rec = FrameRecord(item.index)
        record.frames[item.index] = rec
        try:
            result = computed.result
            if isinstance(result, Failure):
                rec.error = result.message
                log.warning("xrd-mask: frame %d of run %s failed: %s", item.index,
                            item.run_uid, rec.error)
                return
            rec.spot_fraction = result.mask.spot_fraction
            rec.static_fraction = float(np.mean(result.mask.static))
            t0 = time.perf_counter()
            tables = None
            try:
                tables = result.tables.at(item.index) if result.tables is not None else None
                self.sink.write(item.run_uid, item.index, result.mask.codes, result.pattern,
                                tables=tables)
            except JournalFull as exc:
                rec.error = f"result not kept: {exc}"
                if not record.journal_full:  # once per run: every later frame says it too
                    log.error("xrd-mask: %s", exc)
                record.journal_full = True
            except Exception as exc:
                rec.error = f"result not written: {describe(exc)}"
                log.warning("xrd-mask: frame %d of run %s: %s", item.index, item.run_uid,
                            rec.error)
            t1 = time.perf_counter()
            rec.timings = {"read": computed.read_s, "mask": result.timings["mask"],
                           "integrate": result.timings["integrate"],
                           "tables": result.timings.get("tables", 0.0),
                           "batch": computed.batch, "write": t1 - t0,
                           "latency": t1 - item.t_submitted}
            if rec.error is None and self.listeners:
                row = dict(tables.summary) if tables is not None else {}
                self.notify(item.run_uid, item.index, row)
        finally:
            cost = (computed.result.timings.get("total")
                    if not isinstance(computed.result, Failure) else None)
            report = self.lag.finished(item.run_uid, item.t_submitted, cost_s=cost,
                                       workers=self.compute_threads()) or {}
            if record.geometry_check is not None and not record.geometry_noted:
                report = {**report, "geometry_check": record.geometry_check}
                record.geometry_noted = True
            if report and not record.sink_failed:
                self.annotate(item.run_uid, report)

    def annotate(self, run_uid: str, fields: dict[str, Any]) -> None:
        """Progress fields for the run's metadata (a failure is logged, never the run's)."""
        try:
            self.sink.annotate(run_uid, fields)
        except Exception as exc:
            log.warning("xrd-mask: progress of run %s not recorded: %s", run_uid,
                        describe(exc))

    def close(self, item: CloseRun) -> None:
        """The run's status from its record, onto its metadata and to the listeners; its
        results closed in the sink."""
        record = self.records.setdefault(item.run_uid, RunRecord())
        record.exit_status, record.t_close = item.exit_status, time.perf_counter()
        errors: dict[Any, str] = dict(record.errors)
        scan_stopped = item.exit_status not in ("success", "reprocess", "")
        if record.run_errors:
            status = "failed"
            errors["run"] = "; ".join(record.run_errors)
        elif scan_stopped:
            status = "aborted"
        else:
            status = "complete_with_errors" if errors else "complete"
        record.status = status
        n_frames = item.n_frames if item.n_frames is not None else self.lag.frames_seen(
            item.run_uid)
        self.lag.forget(item.run_uid)
        self.forget(item.run_uid)
        self.notify(item.run_uid, None, {"status": status})
        if record.sink_failed:
            return  # the sink never opened this run
        fields: dict[str, Any] = {"n_frames": n_frames, "lag_frames": 0}
        if item.exit_status != "reprocess":
            fields.update(scan_exit_status=item.exit_status or None,
                          scan_reason=item.reason or None)
        self.annotate(item.run_uid, fields)
        try:
            self.sink.close_run(item.run_uid, status, errors)
        except Exception as exc:
            log.error("xrd-mask: could not finish results of run %s: %s", item.run_uid,
                      describe(exc))
            record.run_errors.append(f"close failed: {describe(exc)}")
        log.info("xrd-mask: run %s %s (%d frames done, %d failed%s)", item.run_uid, status,
                 len(record.done), len(record.errors),
                 f"; scan {item.exit_status}: {item.reason}" if scan_stopped else "")
