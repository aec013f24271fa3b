"""Replaying the journal into the result store: `JournaledSink`, the live path's sink.

Each `ResultSink` call is kept in a `~xrd_bluesky_mask.sinks.journal.Journal` (on disk) and
returns; one replay thread applies the kept calls in order and removes them once applied.
While the store is unreachable the files wait (on disk, not in memory) and the replay retries
with back-off through a `~xrd_bluesky_mask.sinks.retry.RetryingSink` (the outage mechanism
reprocessing uses too, here without a deadline: waits double from ``first_wait`` up to
``max_wait`` seconds); as soon as the store answers again they are written.

A store that answers but refuses the API key (HTTP 401/403: e.g. a server restarted with
another key) is not a reason to drop anything: the replay logs the refusal once, naming the key
problem and the command to give the right key (``xrd-mask replay --tiled URI --api-key KEY``),
and keeps the files, trying again every ``max_wait`` seconds until the journal closes.

A frame's file goes only once the store reports the frame among those it has written for
good (its ``done(run)``: `TiledResultSink` writes pattern rows and progress every second, not
with each frame); until then it is held, and the replay asks the store to ``flush`` when it
has nothing else to do. So a process killed between a frame's write and the store's flush
leaves the frame's file, and the next replay writes it again.

Writes are idempotent: a frame replayed twice is written at the same row. Without a
concluding ``close`` (the process died before the scan's stop document), replayed runs are
closed ``interrupted`` with the command that recovers the missing frames.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocols import ResultSink
from ..tiled.retry import Outage, refused, unreachable
from .base import SinkWrapper
from .journal import Journal, Op
from .retry import RetryingSink

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["JournaledSink", "replay_journal"]

log = logging.getLogger(__name__)

#: Seconds without new operations after which frames written but held are flushed.
_FLUSH_IDLE_S = 1.0


class JournaledSink(SinkWrapper[RetryingSink[ResultSink]]):
    """A `ResultSink` that keeps every call in a `Journal` and replays it into ``store``.

    Calls return once the operation is on disk; one thread applies them in order, through a
    `RetryingSink` around ``store`` (``inner``): errors meaning "unreachable" are retried with
    back-off until the store answers or the journal closes; any other error is permanent for
    that operation: a failed ``write`` becomes an error of its frame (added to the run's errors
    when the run is closed), a failed ``open_run`` is logged with the command that recovers the
    run, and the run's other operations are dropped. ``on_error(run, index, message)`` (index
    None: the run) reports both to the caller's records; ``on_applied(kind, run, index)``
    follows the operations written (``xrd-mask -v replay`` prints them).
    """

    def __init__(self, store: ResultSink, journal: Journal, *, first_wait: float = 0.5,
                 max_wait: float = 10.0,
                 on_error: Callable[[str, int | None, str], None] | None = None,
                 on_applied: Callable[[str, str, int | None], None] | None = None) -> None:
        self.journal = journal
        self._stopping = False
        super().__init__(RetryingSink(
            store, give_up_after=None, first_wait=first_wait, max_wait=max_wait,
            stopped=lambda: self._stopping, outage=Outage("result store", self._waiting)))
        self.max_wait = max_wait
        self.on_error = on_error
        self.on_applied = on_applied
        self._cond = threading.Condition()
        self._open_ops: dict[str, Op] = {}
        self._failed_runs: dict[str, str] = {}
        self._frame_errors: dict[str, dict[int, str]] = {}
        self._refused_since: float | None = None
        self._held: dict[str, list[Op]] = {}  # written frames the store has not flushed yet
        self._waiters = 0
        self._close_leftovers()
        self._thread = threading.Thread(target=self._loop, name="xrd-mask-journal", daemon=True)
        self._thread.start()
        if len(journal):
            log.warning("xrd-mask: replaying %d operations (%d frame results) left in the "
                        "journal at %s", len(journal), journal.frames_waiting(),
                        journal.directory)

    def _waiting(self) -> str:
        return (f"; {self.journal.frames_waiting()} frame results wait in the journal at "
                f"{self.journal.directory}")

    def _close_leftovers(self) -> None:
        """Runs left open by a process that died: replay, then close them ``interrupted``."""
        runs = {op.run for op in self.journal.ops if op.kind == "open"}
        closed = {op.run for op in self.journal.ops if op.kind == "close"}
        for run in sorted(runs - closed):
            self.journal.append("close", run, {
                "status": "interrupted",
                "errors": {"run": "the process writing these results stopped before the "
                                  "scan's stop document; its journal was replayed on restart. "
                                  f"Recover the missing frames with `xrd-mask reprocess {run}`."}})

    # -- the ResultSink calls ----------------------------------------------------------
    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Keep the opening of a run."""
        self._keep(lambda: self.journal.append("open", source_uid, {"metadata": metadata}))

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any, *,
              tables: FrameTables | None = None) -> None:
        """Keep a frame's results; `JournalFull` when the journal's budget is spent."""
        self._keep(lambda: self.journal.append_write(source_uid, index, mask_codes, pattern,
                                                     tables))

    def annotate(self, source_uid: str, fields: dict[str, Any]) -> None:
        """Keep progress fields for the run's metadata (see `TiledResultSink.annotate`)."""
        self._keep(lambda: self.journal.append("note", source_uid, {"fields": fields}))

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """Keep the closing of a run."""
        self._keep(lambda: self.journal.append(
            "close", source_uid, {"status": status,
                                  "errors": {str(k): v for k, v in errors.items()}}))

    def _keep(self, store: Callable[[], Any]) -> None:
        store()
        with self._cond:
            self._cond.notify_all()

    # -- waiting ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Operations not yet applied."""
        return len(self.journal)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every kept operation is applied and the store has flushed the frames
        written (their files gone); False if ``timeout`` s passed."""
        with self._cond:
            self._waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self.journal.ops and not self._held,
                                           timeout=timeout)
            finally:
                self._waiters -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Apply what is kept (up to ``timeout`` s), then stop; what is left stays on disk
        (logged, with where) and is replayed by the next journal on this folder."""
        finished = self.wait(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=self.max_wait + 5.0)
        if not finished:
            runs = sorted({op.run for op in self.journal.ops})
            log.error("xrd-mask: %d frame results of %d runs (%s) are not yet in the result "
                      "store; they stay in the journal at %s and are written when xrd-mask "
                      "starts again with this journal. Or run `xrd-mask reprocess UID` for "
                      "each.", self.journal.frames_waiting(), len(runs), ", ".join(runs),
                      self.journal.directory)
        self.journal.release()
        return finished

    # -- replay -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.journal.ops or self._stopping
                                    or (self._held and self._waiters), timeout=_FLUSH_IDLE_S
                                    if self._held else None)
                if self._stopping:
                    return
                if not self.journal.ops:  # idle with written frames not flushed yet
                    op = None
                else:
                    op = self.journal.ops[0]
            if op is None:
                self._flush_held()
                continue
            try:
                done = self._apply(op)
            except Exception:  # never let the replay thread die
                log.exception("xrd-mask: journal operation %s failed", op.path.name)
                done = True
            if done is None:  # the key was refused: the same operation again, later
                continue
            if not done:  # stopping during an outage: the file stays for the next start
                return
            with self._cond:
                self._cond.notify_all()

    def _apply(self, op: Op) -> bool | None:
        """Apply one operation; False when stopped before it could be (the file stays), None
        when the store refused the key (after a wait of ``max_wait`` s: try it again)."""
        run, store = op.run, self.inner
        payload = self.journal.load(op)
        if run in self._failed_runs and op.kind != "open":
            if op.kind == "write":
                self._report(run, op.index, self._failed_runs[run])
            self._forget(op)
            return True
        try:
            if op.kind == "open":
                store.open_run(run, payload["metadata"])
                self._open_ops[run] = op
                self.journal.hold(op)  # the file stays until the run is closed
                return True
            if op.kind == "write":
                codes, pattern, tables = payload
                store.annotate(run, {"frames_pending": self.journal.frames_waiting(run) - 1})
                store.write(run, int(op.index or 0), codes, pattern, tables=tables)
                if hasattr(store.inner, "done"):  # its file goes once the store flushed it
                    self.journal.hold(op)
                    self._held.setdefault(run, []).append(op)
                    self._release_flushed(run)
                    self._applied(op)
                    return True
            elif op.kind == "note":
                store.annotate(run, payload["fields"])
            elif op.kind == "close":
                errors = {**payload["errors"], **{str(k): v for k, v in
                                                   self._frame_errors.pop(run, {}).items()}}
                status = payload["status"]
                if status == "complete" and errors:
                    status = "complete_with_errors"
                store.annotate(run, {"frames_pending": 0})
                store.close_run(run, status, errors)  # flushes everything
                for held in self._held.pop(run, []):
                    self._forget(held)
                opening = self._open_ops.pop(run, None)
                if opening is not None:
                    self._forget(opening)
        except Exception as exc:
            if self._stopping and (unreachable(exc) or refused(exc)):
                return False
            if refused(exc):
                self._key_refused(exc)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, timeout=self.max_wait)
                return None
            self._permanent(op, exc)
            self._forget(op)
            return True
        self._applied(op)
        self._forget(op)
        return True

    def _applied(self, op: Op) -> None:
        if self.on_applied is not None:
            self.on_applied(op.kind, op.run, op.index)
        if self._refused_since is not None:
            log.warning("xrd-mask: the result store accepts the API key again; writing the "
                        "%d frame results waiting in the journal", self.journal.frames_waiting())
            self._refused_since = None

    def _release_flushed(self, run: str) -> None:
        """Remove the held files of frames the store now reports written for good."""
        held = self._held.get(run)
        if not held:
            return
        done = self.inner.inner.done(run)
        for op in [op for op in held if op.index in done]:
            held.remove(op)
            self._forget(op)
        if not held:
            del self._held[run]

    def _flush_held(self) -> None:
        """Ask the store to write what it buffers for runs with held frames, then release
        them (retried while unreachable; on another error the files stay, retried later)."""
        store = self.inner.inner
        for run in list(self._held):
            flush = getattr(store, "flush", None)
            try:
                if flush is not None:
                    self.inner._call(f"flush results of {run}",
                                     lambda r=run, f=flush: f(r))
                self._release_flushed(run)
                if flush is None or run not in self._held:
                    continue
                raise RuntimeError(f"frames {[op.index for op in self._held[run]]} not "
                                   "reported written after a flush")
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("xrd-mask: flushing the results of run %s failed (%s: %s); its "
                            "last frames stay in the journal and are tried again", run,
                            type(exc).__name__, exc)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, timeout=self.max_wait)
        with self._cond:
            self._cond.notify_all()

    def _key_refused(self, exc: BaseException) -> None:
        """Log the first refusal of a series: what it means, and how to give the right key."""
        if self._refused_since is not None:
            return
        import time

        self._refused_since = time.monotonic()
        uri = getattr(self.inner.inner, "uri", None)
        log.error("xrd-mask: %s refuses this process's API key (%s). Nothing is lost: %d "
                  "frame results wait in the journal at %s, retried every %g s. Give the "
                  "right key: `xrd-mask replay --tiled %s --api-key KEY` (or restart the "
                  "session or worker with it) writes them.", uri or "the result store",
                  str(exc).splitlines()[0][:300], self.journal.frames_waiting(),
                  self.journal.directory, self.max_wait, uri or "URI")
    def _permanent(self, op: Op, exc: BaseException) -> None:
        what = f"{type(exc).__name__}: {exc}"
        if op.kind == "open":
            message = f"results not written: {what}"
            self._failed_runs[op.run] = message
            log.error("xrd-mask: results of run %s cannot be written (%s). Recover them with "
                      "`xrd-mask reprocess %s` once the result store accepts them.", op.run,
                      what, op.run)
            self._report(op.run, None, message)
        elif op.kind == "write":
            message = f"result not written: {what}"
            self._frame_errors.setdefault(op.run, {})[int(op.index or 0)] = message
            log.warning("xrd-mask: frame %s of run %s: %s", op.index, op.run, message)
            self._report(op.run, op.index, message)
        else:
            log.error("xrd-mask: could not %s the results of run %s: %s", op.kind, op.run, what)
            if op.kind == "close":
                self._report(op.run, None, f"close failed: {what}")

    def _report(self, run: str, index: int | None, message: str) -> None:
        if self.on_error is not None:
            self.on_error(run, index, message)

    def _forget(self, op: Op) -> None:
        self.journal.remove(op)
        if op.kind == "close":
            self._failed_runs.pop(op.run, None)


def replay_journal(folder: str | Path, store: Callable[[], ResultSink], *,
                   timeout: float | None = 120.0, max_wait: float = 2.0,
                   on_applied: Callable[[str, str, int | None], None] | None = None,
                   ) -> tuple[int, int, list[str]]:
    """Write what waits in every slot of the journal folder ``folder`` into ``store()`` (one
    store per slot), as a restarted session would; for ``xrd-mask replay``.

    A slot held by a running process is left to it. Each slot is given ``timeout`` seconds
    (None: no limit) while the store is unreachable; what is left stays on disk.

    Returns
    -------
    tuple
        ``(frames written, frames left, problems)``: problems are the slots in use and the
        operations the store refused for good (as ``"run R frame I: message"``).
    """
    problems: list[str] = []
    refused_frames = [0]

    def on_error(run: str, index: int | None, message: str) -> None:
        problems.append(f"run {run}{'' if index is None else f' frame {index}'}: {message}")
        refused_frames[0] += index is not None

    written = left = 0
    for slot in Journal.slots_with_files(folder):
        try:
            journal = Journal(folder, slot=slot)
        except BlockingIOError as exc:
            problems.append(str(exc))
            continue
        before = journal.frames_waiting()
        sink = JournaledSink(store(), journal, max_wait=max_wait, on_error=on_error,
                             on_applied=on_applied)
        sink.close(timeout)
        after = journal.frames_waiting()
        written, left = written + before - after - refused_frames[0], left + after
        refused_frames[0] = 0
    return written, left, problems
