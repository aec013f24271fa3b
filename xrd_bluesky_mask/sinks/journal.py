"""A durable local journal of results computed but not yet written: its files on disk.

The live worker never writes to the result store (Tiled) directly: each `ResultSink` call (open
a run, write a frame, a note on the run's progress, close it) is first kept as a file here,
then applied in order by a `~xrd_bluesky_mask.sinks.journaled.JournaledSink` and removed once
applied. A process that dies leaves its files; the next journal opened on the same folder
replays them first.

Layout: ``<root>/<name>/slot-<n>/`` holds one file per operation, ``<seq>-<kind>.json`` or
``<seq>-write.npz`` (mask codes, pattern arrays, table rows; zlib-compressed masks while the
replay is behind). A process takes the first free slot (an exclusive `filelock` held while
it lives), so a restarted process finds what its predecessor left, and two processes never
replay the same files. A run's ``open`` file stays until its ``close`` is applied, so a
replay after a restart opens (resumes) the run before writing its frames.

The journal is bounded (``max_bytes`` of frame results): a frame that does not fit is an
error for that frame (`JournalFull`, with what to do), never a blocked or failed scan. So is a
frame whose file the disk cannot take (no space left, a file-size limit: any `OSError` while
writing): its partial file is removed and the frame reported (`JournalFull`, naming the disk);
a run-level operation (``open``, ``note``, ``close``: a few hundred bytes) the disk cannot take
is kept in memory only, logged, so that the run is still opened and closed in the store.

``<root>/<name>/origin.json`` names the store a folder's results wait for (its URI without the
key, the results root, when the folder was made): what `xrd_bluesky_mask.bluesky.leftovers`
reports for folders whose server no longer answers, and ``xrd-mask replay`` uses.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
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

__all__ = ["DEFAULT_MAX_BYTES", "ENV_VAR", "ORIGIN_FILE", "Journal", "default_journal_dir",
           "journal_name", "read_origin", "write_origin"]

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
#: The file naming the store a journal or run-backup folder waits for.
ORIGIN_FILE = "origin.json"


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


def write_origin(folder: str | Path, uri: str, container: str = "") -> None:
    """Record in ``folder`` which store its files wait for (once: an existing record stays).

    ``uri`` is the server (an ``?api_key=`` query is dropped: the key is never written);
    ``container`` the results root or runs container. A failure to write it is logged only:
    the record serves reports, never the results themselves."""
    path = Path(folder) / ORIGIN_FILE
    if path.exists():
        return
    record = {"uri": uri.split("?", 1)[0].rstrip("/"), "container": container.strip("/"),
              "created": datetime.datetime.now(datetime.UTC).isoformat(
                  timespec="seconds")}
    try:
        tmp = path.with_name(f".{ORIGIN_FILE}.tmp")
        tmp.write_text(json.dumps(record))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("xrd-mask: could not record the store of %s (%s)", folder, exc)


def read_origin(folder: str | Path) -> dict[str, str] | None:
    """The record `write_origin` left in ``folder`` (None: none, or unreadable)."""
    try:
        record = json.loads((Path(folder) / ORIGIN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@dataclass
class Op:
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


def _private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) and leave it to this user alone (0700): results
    waiting for the store are a user's unpublished data, and beamline workstations are shared.
    A folder made before this rule is closed when a journal opens it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


class Journal:
    """The files of one journal slot (see the module docstring).

    Parameters
    ----------
    directory
        The journal's folder for one result store; the slot is taken inside it.
    max_bytes
        Most bytes of frame results held at once (run-level operations are always kept).
    slot
        Take this slot (`BlockingIOError` if another process holds it); None: the first free
        one. ``xrd-mask replay`` takes each slot left with files in turn (`slots_with_files`).
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 slot: int | None = None) -> None:
        from filelock import FileLock, Timeout

        self.root = Path(directory)
        self.max_bytes = int(max_bytes)
        _private_dir(self.root)
        for n in itertools.count() if slot is None else [slot]:
            lock = FileLock(self.root / f"slot-{n}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if slot is not None:
                    raise BlockingIOError(
                        errno.EWOULDBLOCK, f"journal slot {self.root / f'slot-{n}'} is in use "
                        "by another process (a running session or worker replays it)") from None
                continue
            self._lock, self.directory = lock, self.root / f"slot-{n}"
            break
        _private_dir(self.directory)
        self._mutex = threading.Lock()
        self.ops: deque[Op] = deque()
        self.bytes = 0
        self._cache: dict[int, Any] = {}
        self._in_memory: dict[int, Any] = {}  # run-level ops the disk could not take
        for path in sorted(self.directory.iterdir()):
            m = _OP_FILE.fullmatch(path.name)
            if m is None:
                path.unlink(missing_ok=True)  # a file half written when its process died
                continue
            op = Op(int(m.group(1)), m.group(2), "", path, path.stat().st_size)
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

    @staticmethod
    def slots_with_files(directory: str | Path) -> list[int]:
        """The slots of the journal folder ``directory`` that hold operations."""
        found = []
        for path in Path(directory).glob("slot-*"):
            m = re.fullmatch(r"slot-(\d+)", path.name)
            if m and path.is_dir() and any(_OP_FILE.fullmatch(f.name) for f in path.iterdir()):
                found.append(int(m.group(1)))
        return sorted(found)

    def release(self) -> None:
        """Let another journal take this slot (the files stay)."""
        self._lock.release()

    # -- writing ----------------------------------------------------------------------
    def _store(self, kind: str, run: str, write: Callable[[Path], Any], size_hint: int,
               payload: Any, index: int | None = None) -> Op:
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
        try:
            write(tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, final)
            size = final.stat().st_size
        except OSError as exc:  # no space left, a file-size limit, a read-only disk...
            tmp.unlink(missing_ok=True)  # never a half-written file
            if kind == "write":
                raise JournalFull(
                    f"the disk holding the results journal at {self.directory} cannot take "
                    f"frame {index} of run {run} ({_os_error(exc)}): that frame is not kept. "
                    "Free space on that disk (or point $XRD_MASK_JOURNAL elsewhere), then run "
                    f"`xrd-mask reprocess {run}` for the frames listed as failed.") from exc
            log.error("xrd-mask: the disk holding the results journal at %s cannot take the "
                      "%s of run %s (%s); it is kept in memory only, and lost if this process "
                      "stops before the result store has it", self.directory, kind, run,
                      _os_error(exc))
            op = Op(seq, kind, run, final, 0, index)
            with self._mutex:
                self._in_memory[seq] = payload
                self.ops.append(op)
            return op
        op = Op(seq, kind, run, final, size, index)
        with self._mutex:
            self._cache[op.seq] = payload
            while len(self._cache) > _CACHED:
                del self._cache[min(self._cache)]
            self.ops.append(op)
            if kind == "write":
                self.bytes += op.size
        return op

    def append(self, kind: str, run: str, payload: dict[str, Any]) -> Op:
        """Keep a run-level operation (``open``, ``note``, ``close``) with its JSON payload."""
        text = json.dumps({"run": run, **payload})
        return self._store(kind, run, lambda p: p.write_text(text), len(text), payload)

    def append_write(self, run: str, index: int, codes: np.ndarray, pattern: Any,
                     tables: Any = None) -> Op:
        """Keep frame ``index``'s mask codes, pattern and tables (a
        `~xrd_bluesky_mask.spots.FrameTables`, or None); `JournalFull` if over budget."""
        arrays, header = _pattern_arrays(pattern)
        if tables is not None:
            arrays.update(tables.to_arrays())
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

        return self._store("write", run, write, size, (codes, pattern, tables), int(index))

    # -- reading ----------------------------------------------------------------------
    def _header(self, op: Op) -> tuple[str, int | None]:
        if op.kind != "write":
            return json.loads(op.path.read_text())["run"], None
        with np.load(op.path, allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
        return header["run"], int(header["index"])

    def load(self, op: Op) -> Any:
        """The payload of ``op``: a dict, or ``(codes, pattern, tables)`` for a write."""
        with self._mutex:
            cached = self._cache.get(op.seq, self._in_memory.get(op.seq))
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
            from ..spots import FrameTables

            tables = FrameTables.from_arrays(npz)
        return codes, pattern, tables

    def hold(self, op: Op) -> None:
        """Take an applied operation off the queue but keep its file (a run's opening, needed
        again if the process restarts before the run is closed)."""
        with self._mutex:
            self._cache.pop(op.seq, None)
            with contextlib.suppress(ValueError):
                self.ops.remove(op)

    def remove(self, op: Op) -> None:
        """Forget an applied operation (its file goes)."""
        self.hold(op)
        with self._mutex:
            self._in_memory.pop(op.seq, None)
            if op.kind == "write" and op.path.exists():
                self.bytes -= op.size
        with contextlib.suppress(FileNotFoundError):
            op.path.unlink()

    def in_memory_only(self) -> int:
        """Run-level operations the disk could not take, kept in memory until applied."""
        with self._mutex:
            return len(self._in_memory)

    def frames_waiting(self, run: str | None = None) -> int:
        """Frame results not yet applied (of ``run``, or of every run)."""
        with self._mutex:
            return sum(1 for op in self.ops if op.kind == "write" and run in (None, op.run))


def _os_error(exc: OSError) -> str:
    """``"ENOSPC: No space left on device"`` for an `OSError` (its errno's name, its text)."""
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{name}: {exc.strerror or exc}"
