"""A durable local journal of results computed but not yet written, replayed into the sink.

The worker never writes to the result store (Tiled) directly: each `ResultSink` call (open a
run, write a frame, a note on the run's progress, close it) is first kept as a file in the
journal, then applied by one replay thread, in order, and removed once applied. While the
store is unreachable the files wait (on disk, not in memory) and the replay retries with
back-off through a `~xrd_bluesky_mask.sinks.retry.RetryingSink` (the outage mechanism
reprocessing uses too, here without a deadline: waits double from ``first_wait`` up to
``max_wait`` seconds); as soon as the store answers again they are written. A process that
dies leaves its files; the next journal opened on the same folder replays them first.

Layout: ``<root>/<name>/slot-<n>/`` holds one file per operation, ``<seq>-<kind>.json`` or
``<seq>-write.npz`` (mask codes and the pattern's arrays; zlib-compressed masks while the
replay is behind). A process takes the first free slot (an exclusive `filelock` held while
it lives), so a restarted process finds what its predecessor left, and two processes never
replay the same files. A run's ``open`` file stays until its ``close`` is applied, so a
replay after a restart opens (resumes) the run before writing its frames.

Writes are idempotent: a frame replayed twice is written at the same row. The journal is
bounded (``max_bytes`` of frame results): a frame that does not fit is an error for that
frame (`JournalFull`, with what to do), never a blocked or failed scan.

Without a concluding ``close`` (the process died before the scan's stop document), replayed
runs are closed ``interrupted`` with the command that recovers the missing frames.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JournalFull
from ..protocols import ResultSink
from ..tiled.retry import Outage, unreachable
from .base import SinkWrapper
from .retry import RetryingSink

__all__ = ["DEFAULT_MAX_BYTES", "ENV_VAR", "Journal", "JournaledSink", "default_journal_dir",
           "journal_name"]

log = logging.getLogger(__name__)

#: Environment variable naming the journals' root folder.
ENV_VAR = "XRD_MASK_JOURNAL"
#: Default budget of frame results held in one journal, bytes (2 GiB).
DEFAULT_MAX_BYTES = 2 << 30
#: Operations kept in memory as well as on disk (saves reading back what was just written).
_CACHED = 4
#: Pending operations beyond which masks are compressed (the replay is behind).
_COMPRESS_BEYOND = 4
_OP_FILE = re.compile(r"(\d{12})-(open|write|note|close)\.(json|npz)")


def default_journal_dir() -> Path:
    """``$XRD_MASK_JOURNAL``, else ``journal`` in the user state folder (`platformdirs`; on
    Linux ``~/.local/state/xrd-bluesky-mask/journal``)."""
    import platformdirs

    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return platformdirs.user_state_path("xrd-bluesky-mask", appauthor=False) / "journal"


def journal_name(*parts: str) -> str:
    """A folder name for the journal of one result store (e.g. its URI and results root)."""
    text = "|".join(parts)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:60] or "sink"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass
class _Op:
    seq: int
    kind: str
    run: str
    path: Path
    size: int
    index: int | None = None


def _pattern_arrays(pattern: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {"intensity": np.asarray(pattern.values)}
    coords = {}
    for name, coord in pattern.coords.items():
        arrays[f"coord_{name}"] = np.asarray(coord.values)
        coords[str(name)] = {k: _jsonable(v) for k, v in coord.attrs.items()}
    return arrays, {"attrs": {k: _jsonable(v) for k, v in pattern.attrs.items()},
                    "coords": coords, "name": pattern.name}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _pattern_from(arrays: Any, header: dict[str, Any]) -> Any:
    import xarray as xr

    coords = {name: ("radial", arrays[f"coord_{name}"], attrs)
              for name, attrs in header["coords"].items()}
    return xr.DataArray(arrays["intensity"], dims=("radial",), coords=coords,
                        name=header.get("name"), attrs=header["attrs"])


class Journal:
    """The files of one journal slot (see the module docstring).

    Parameters
    ----------
    directory
        The journal's folder for one result store; the slot is taken inside it.
    max_bytes
        Most bytes of frame results held at once (run-level operations are always kept).
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        from filelock import FileLock, Timeout

        self.root = Path(directory)
        self.max_bytes = int(max_bytes)
        self.root.mkdir(parents=True, exist_ok=True)
        for n in itertools.count():
            lock = FileLock(self.root / f"slot-{n}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            self._lock, self.directory = lock, self.root / f"slot-{n}"
            break
        self.directory.mkdir(exist_ok=True)
        self._mutex = threading.Lock()
        self.ops: deque[_Op] = deque()
        self.bytes = 0
        self._cache: dict[int, Any] = {}
        for path in sorted(self.directory.iterdir()):
            m = _OP_FILE.fullmatch(path.name)
            if m is None:
                path.unlink(missing_ok=True)  # a file half written when its process died
                continue
            op = _Op(int(m.group(1)), m.group(2), "", path, path.stat().st_size)
            try:
                op.run, op.index = self._header(op)
            except Exception as exc:
                log.error("xrd-mask: journal file %s unreadable (%s); moved aside", path, exc)
                path.rename(path.with_suffix(path.suffix + ".bad"))
                continue
            self.ops.append(op)
            self.bytes += op.size if op.kind == "write" else 0
        self._seq = itertools.count(self.ops[-1].seq + 1 if self.ops else 0)

    def __len__(self) -> int:
        return len(self.ops)

    def release(self) -> None:
        """Let another journal take this slot (the files stay)."""
        self._lock.release()

    # -- writing ----------------------------------------------------------------------
    def _store(self, kind: str, run: str, write: Callable[[Path], Any], size_hint: int,
               index: int | None = None) -> _Op:
        with self._mutex:
            if kind == "write" and self.bytes + size_hint > self.max_bytes:
                raise JournalFull(
                    f"the results journal at {self.directory} is full ({self.bytes / 1e6:.0f} "
                    f"of {self.max_bytes / 1e6:.0f} MB waiting for the result store): frame "
                    f"{index} of run {run} is not kept. Bring the store (Tiled) back or raise "
                    f"the journal's budget, then run `xrd-mask reprocess {run}` for the frames "
                    "listed as failed.")
            seq = next(self._seq)
        final = self.directory / f"{seq:012d}-{kind}.{'npz' if kind == 'write' else 'json'}"
        tmp = final.with_name(f".{final.name}.tmp")
        write(tmp)
        os.replace(tmp, final)
        op = _Op(seq, kind, run, final, final.stat().st_size, index)
        with self._mutex:
            self.ops.append(op)
            if kind == "write":
                self.bytes += op.size
        return op

    def append(self, kind: str, run: str, payload: dict[str, Any]) -> _Op:
        """Keep a run-level operation (``open``, ``note``, ``close``) with its JSON payload."""
        text = json.dumps({"run": run, **payload})
        op = self._store(kind, run, lambda p: p.write_text(text), len(text))
        self._cache_put(op, payload)
        return op

    def append_write(self, run: str, index: int, codes: np.ndarray, pattern: Any) -> _Op:
        """Keep frame ``index``'s mask codes and pattern; `JournalFull` if over budget."""
        arrays, header = _pattern_arrays(pattern)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        header.update(run=run, index=int(index), shape=list(codes.shape))
        if len(self.ops) > _COMPRESS_BEYOND:
            arrays["mask_z"] = np.frombuffer(zlib.compress(codes.tobytes(), 1), np.uint8)
        else:
            arrays["mask"] = codes
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        size = sum(a.nbytes for a in arrays.values())

        def write(path: Path) -> None:
            with open(path, "wb") as fh:
                np.savez(fh, allow_pickle=False, **arrays)

        op = self._store("write", run, write, size, int(index))
        self._cache_put(op, (codes, pattern))
        return op

    def _cache_put(self, op: _Op, payload: Any) -> None:
        with self._mutex:
            self._cache[op.seq] = payload
            while len(self._cache) > _CACHED:
                del self._cache[min(self._cache)]

    # -- reading ----------------------------------------------------------------------
    def _header(self, op: _Op) -> tuple[str, int | None]:
        if op.kind != "write":
            return json.loads(op.path.read_text())["run"], None
        with np.load(op.path, allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
        return header["run"], int(header["index"])

    def load(self, op: _Op) -> Any:
        """The payload of ``op``: a dict, or ``(codes, pattern)`` for a write."""
        with self._mutex:
            cached = self._cache.get(op.seq)
        if cached is not None:
            return cached
        if op.kind != "write":
            payload = json.loads(op.path.read_text())
            payload.pop("run", None)
            return payload
        with np.load(op.path, allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
            shape = tuple(header["shape"])
            if "mask_z" in npz.files:
                codes = np.frombuffer(zlib.decompress(npz["mask_z"].tobytes()),
                                      np.uint8).reshape(shape)
            else:
                codes = npz["mask"]
            pattern = _pattern_from(npz, header)
        return codes, pattern

    def hold(self, op: _Op) -> None:
        """Take an applied operation off the queue but keep its file (a run's opening, needed
        again if the process restarts before the run is closed)."""
        with self._mutex:
            self._cache.pop(op.seq, None)
            with contextlib.suppress(ValueError):
                self.ops.remove(op)

    def remove(self, op: _Op) -> None:
        """Forget an applied operation (its file goes)."""
        self.hold(op)
        with self._mutex:
            if op.kind == "write" and op.path.exists():
                self.bytes -= op.size
        with contextlib.suppress(FileNotFoundError):
            op.path.unlink()

    def frames_waiting(self, run: str | None = None) -> int:
        """Frame results not yet applied (of ``run``, or of every run)."""
        with self._mutex:
            return sum(1 for op in self.ops if op.kind == "write" and run in (None, op.run))


class JournaledSink(SinkWrapper[RetryingSink[ResultSink]]):
    """A `ResultSink` that keeps every call in a `Journal` and replays it into ``store``.

    Calls return once the operation is on disk; one thread applies them in order, through a
    `RetryingSink` around ``store`` (``inner``): errors meaning "unreachable" are retried with
    back-off until the store answers or the journal closes; any other error is permanent for
    that operation: a failed ``write`` becomes an error of its frame (added to the run's errors
    when the run is closed), a failed ``open_run`` is logged with the command that recovers the
    run, and the run's other operations are dropped. ``on_error(run, index, message)`` (index
    None: the run) reports both to the caller's records.
    """

    def __init__(self, store: ResultSink, journal: Journal, *, first_wait: float = 0.5,
                 max_wait: float = 10.0,
                 on_error: Callable[[str, int | None, str], None] | None = None) -> None:
        self.journal = journal
        self._stopping = False
        super().__init__(RetryingSink(
            store, give_up_after=None, first_wait=first_wait, max_wait=max_wait,
            stopped=lambda: self._stopping, outage=Outage("result store", self._waiting)))
        self.max_wait = max_wait
        self.on_error = on_error
        self._cond = threading.Condition()
        self._open_ops: dict[str, _Op] = {}
        self._failed_runs: dict[str, str] = {}
        self._frame_errors: dict[str, dict[int, str]] = {}
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

    def write(self, source_uid: str, index: int, mask_codes: np.ndarray, pattern: Any) -> None:
        """Keep a frame's results; `JournalFull` when the journal's budget is spent."""
        self._keep(lambda: self.journal.append_write(source_uid, index, mask_codes, pattern))

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
        """Block until every kept operation is applied; False if ``timeout`` s passed."""
        with self._cond:
            return self._cond.wait_for(lambda: not self.journal.ops, timeout=timeout)

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
                self._cond.wait_for(lambda: self.journal.ops or self._stopping)
                if self._stopping:
                    return
                op = self.journal.ops[0]
            try:
                done = self._apply(op)
            except Exception:  # never let the replay thread die
                log.exception("xrd-mask: journal operation %s failed", op.path.name)
                done = True
            if not done:  # stopping during an outage: the file stays for the next start
                return
            with self._cond:
                self._cond.notify_all()

    def _apply(self, op: _Op) -> bool:
        """Apply one operation; False when stopped before it could be (the file stays)."""
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
                codes, pattern = payload
                store.annotate(run, {"frames_pending": self.journal.frames_waiting(run) - 1})
                store.write(run, int(op.index or 0), codes, pattern)
            elif op.kind == "note":
                store.annotate(run, payload["fields"])
            elif op.kind == "close":
                errors = {**payload["errors"], **{str(k): v for k, v in
                                                   self._frame_errors.pop(run, {}).items()}}
                status = payload["status"]
                if status == "complete" and errors:
                    status = "complete_with_errors"
                store.annotate(run, {"frames_pending": 0})
                store.close_run(run, status, errors)
                opening = self._open_ops.pop(run, None)
                if opening is not None:
                    self._forget(opening)
        except Exception as exc:
            if self._stopping and unreachable(exc):
                return False
            self._permanent(op, exc)
        self._forget(op)
        return True
    def _permanent(self, op: _Op, exc: BaseException) -> None:
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

    def _forget(self, op: _Op) -> None:
        self.journal.remove(op)
        if op.kind == "close":
            self._failed_runs.pop(op.run, None)
