"""Where the worker reads frames (`~xrd_bluesky_mask.protocols.FrameSource`): from Tiled or
from memory.

A work item names a frame that TiledWriter is about to make readable: ``(run uid, stream,
field, index)``. `TiledFrameSource.read` waits for it with bounded retries and back-off
(`~xrd_bluesky_mask.tiled.retry.backoff_attempts`: refreshing the cached array client, retrying
the IndexError/KeyError Tiled raises while the frame is not there yet) and raises
`FrameUnavailable` after ``timeout`` seconds.

When the array is an external HDF5 file that this machine can open (the embedded server, or a
shared file system), the frame's bytes are read from that file directly (SWMR): Tiled says
*where* the frames are (the array's data source, looked up once the first frame is registered)
and the server is spared the heaviest request of the pipeline (a 2880 x 2880 float32 frame is
33 MB). Later frames of the run are read from that file without asking the server again (the
callback only names frames whose StreamDatum TiledWriter has already handled); a frame the
file does not hold (e.g. one in a second file) goes through the Tiled lookup again. Otherwise,
or if the file read fails, the frame comes through Tiled's HTTP API.

The run's documents say where the frames are, too: the callback passes each StreamResource's
file and dataset and each StreamDatum's rows on (`TiledFrameSource.note_file`), so a frame
whose detector file this machine can read is read from that file without asking Tiled at all:
masking goes on while Tiled is away (the results wait in the journal). A frame fails only when
neither the file nor Tiled has it, and `FrameUnavailable` then says what was found where.

It also retries HTTP 422 "Can not reshape": with tiled 0.2.20, an ophyd-async array registered
as ``(N, 1, rows, cols)`` is unreadable while the detector's HDF5 file already holds frame N+1
and TiledWriter has not registered it yet (tiled trims a file that grew only when the ranks are
equal). The next registration makes it readable again.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ..errors import FrameUnavailable
from .retry import backoff_attempts

__all__ = ["InMemoryFrameSource", "TiledFrameSource", "as_frame"]

log = logging.getLogger(__name__)


def as_frame(data: np.ndarray) -> np.ndarray:
    """Drop leading length-1 axes (ophyd-async stores ``(1, rows, cols)`` per event)."""
    a = np.asarray(data)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    return a


def _transient(exc: Exception) -> bool:
    """A Tiled read error that goes away once TiledWriter registers the next frame."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status == 422 and "reshape" in str(exc)


def _not_yet_readable(exc: Exception) -> bool:
    """A frame that TiledWriter has not registered yet (or a `_transient` error): wait for it."""
    return isinstance(exc, IndexError | KeyError) or _transient(exc)


@dataclass(frozen=True)
class _LocalHDF5:
    path: str
    dataset: str


def _local_hdf5(arr: Any) -> _LocalHDF5 | None:
    """The local HDF5 file behind an external Tiled array (one file only), or None."""
    try:
        (source,) = arr.data_sources()
    except Exception:  # not one data source, or not exposed
        return None
    if source.mimetype != "application/x-hdf5" or len(source.assets) != 1:
        return None
    uri = urlsplit(source.assets[0].data_uri)
    path = unquote(uri.path)
    dataset = (source.parameters or {}).get("dataset")
    if uri.scheme != "file" or uri.netloc not in ("", "localhost") or not dataset:
        return None
    return _LocalHDF5(path, dataset) if os.path.isfile(path) else None


@dataclass(frozen=True)
class _NotedRows:
    """Rows ``first .. first + count - 1`` of a run's array are rows ``file_first ..`` of a
    detector file (from a StreamResource and its StreamDatum documents)."""

    first: int
    count: int
    local: _LocalHDF5
    file_first: int


def _file_of(uri: str, parameters: dict[str, Any] | None, mimetype: str) -> _LocalHDF5 | None:
    """The local HDF5 file and dataset a StreamResource names, or None (another format, not a
    local ``file:`` URI, no dataset)."""
    if mimetype not in ("application/x-hdf5", "application/x-hdf5-swmr"):
        return None
    parts = urlsplit(uri)
    dataset = (parameters or {}).get("dataset")
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not dataset:
        return None
    return _LocalHDF5(unquote(parts.path), str(dataset))


def _read_hdf5(local: _LocalHDF5, index: int) -> np.ndarray | None:
    """Frame ``index`` of the file, or None if the file does not hold it yet."""
    import h5py

    with h5py.File(local.path, "r", swmr=True, libver="latest") as fh:
        dset = fh[local.dataset]
        if not isinstance(dset, h5py.Dataset):
            raise TypeError(f"{local.dataset!r} is a {type(dset).__name__}, not a dataset")
        dset.refresh()
        if index >= dset.shape[0]:
            return None
        return np.asarray(dset[index])


class TiledFrameSource:
    """Frames read through a Tiled client, waiting until TiledWriter has made them readable.

    Parameters
    ----------
    runs
        The Tiled container that holds the runs (what TiledWriter was given).
    timeout
        Seconds to wait for one frame before `FrameUnavailable`.
    poll
        First wait between attempts, seconds; doubles up to ``max_poll``.
    max_poll
        Longest wait between attempts, seconds.
    direct
        Read registered frames straight from their HDF5 file when this machine can open it.
    """

    def __init__(self, runs: Any, *, timeout: float = 30.0, poll: float = 0.02,
                 max_poll: float = 0.5, direct: bool = True) -> None:
        self.runs, self.timeout, self.poll, self.max_poll = runs, timeout, poll, max_poll
        self.direct = direct
        self._arrays: dict[tuple[str, str, str], Any] = {}
        self._files: dict[tuple[str, str, str], _LocalHDF5 | None] = {}
        self._noted: dict[tuple[str, str, str], list[_NotedRows]] = {}
        self._lock = threading.Lock()

    def note_file(self, run_uid: str, stream: str, field: str, first: int, count: int, *,
                  uri: str, parameters: dict[str, Any] | None, mimetype: str,
                  file_first: int) -> None:
        """Rows ``first .. first + count - 1`` of ``run_uid/stream/field`` are rows
        ``file_first ..`` of the detector file ``uri`` (a StreamResource's ``uri``,
        ``parameters`` and ``mimetype``; the StreamDatum's ``indices["start"]``). `read` takes
        them from that file when it is readable here, without Tiled. Other formats are ignored.
        """
        local = _file_of(uri, parameters, mimetype)
        if local is None or count <= 0:
            return
        with self._lock:
            self._noted.setdefault((run_uid, stream, field), []).append(
                _NotedRows(first, count, local, file_first))

    def _read_noted(self, key: tuple[str, str, str], index: int) -> tuple[np.ndarray | None, str]:
        """Frame ``index`` from the file the run's documents name: ``(frame, "")``, or
        ``(None, why not)`` ("" when no document named a file for it)."""
        with self._lock:
            rows = [r for r in self._noted.get(key, ()) if r.first <= index < r.first + r.count]
        if not rows:
            return None, ""
        noted = rows[-1]
        row = noted.file_first + index - noted.first
        path = noted.local.path
        if not os.path.isfile(path):
            return None, f"the detector file {path} that the run's StreamResource names " \
                         "is not on this machine (or no longer exists)"
        try:
            frame = _read_hdf5(noted.local, row)
        except Exception as exc:
            return None, f"the detector file {path} could not be read ({type(exc).__name__}: " \
                         f"{exc})"
        if frame is None:
            return None, f"the detector file {path} holds no row {row} (fewer frames)"
        return as_frame(frame), ""

    def _fetch(self, key: tuple[str, str, str], arr: Any, index: int) -> np.ndarray:
        """Frame ``index`` of a registered array: from its local file if possible, else HTTP."""
        if self.direct:
            if key not in self._files:
                self._files[key] = _local_hdf5(arr)
            frame = self._read_local(key, index)
            if frame is not None:
                return frame
        return as_frame(arr[index])

    def _read_local(self, key: tuple[str, str, str], index: int) -> np.ndarray | None:
        """Frame ``index`` from the run's HDF5 file read directly, or None (not known, not
        written yet, or unreadable: then the file is forgotten and reads go through Tiled)."""
        local = self._files.get(key)
        if local is None:
            return None
        try:
            frame = _read_hdf5(local, index)
        except Exception as exc:
            log.warning("reading %s directly failed (%s); reading through Tiled", local.path, exc)
            self._files[key] = None
            return None
        return None if frame is None else as_frame(frame)

    def _array(self, run_uid: str, stream: str, field: str) -> Any:
        key = (run_uid, stream, field)
        with self._lock:
            arr = self._arrays.get(key)
        if arr is None:
            arr = self.runs[f"{run_uid}/{stream}/{field}"]  # KeyError until created
            if self.direct:
                arr = arr.include_data_sources()  # later refreshes bring them along
            with self._lock:
                self._arrays[key] = arr
        return arr

    def _drop_clients(self, run_uid: str) -> None:
        """Drop the cached array clients of a run (they are made again on the next read)."""
        with self._lock:
            for key in [k for k in self._arrays if k[0] == run_uid]:
                del self._arrays[key]
                self._files.pop(key, None)

    def forget(self, run_uid: str) -> None:
        """Drop everything kept about a finished run: array clients, the files its
        documents named."""
        self._drop_clients(run_uid)
        with self._lock:
            for key in [k for k in self._noted if k[0] == run_uid]:
                del self._noted[key]

    def read(self, run_uid: str, stream: str, field: str, index: int) -> np.ndarray:
        """Frame ``index`` of ``run_uid/stream/field`` as a 2D array.

        Raises
        ------
        FrameUnavailable
            The frame did not become readable within ``timeout`` seconds.
        """
        key = (run_uid, stream, field)
        file_problem = ""
        if self.direct:  # the run's documents or Tiled named its file: no round trip
            frame, file_problem = self._read_noted(key, index)
            if frame is not None:
                return frame
            frame = self._read_local(key, index)
            if frame is not None:
                return frame
        attempts = 0
        try:
            for attempt in backoff_attempts(_not_yet_readable, give_up_after=self.timeout,
                                            first_wait=self.poll, max_wait=self.max_poll):
                with attempt:
                    attempts = attempt.num
                    return self._read_registered(key, index)
        except Exception as exc:
            if not _not_yet_readable(exc):
                raise
            last = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            if not file_problem and self.direct:
                file_problem = self._read_noted(key, index)[1]
            also = f"; and {file_problem}" if file_problem else ""
            raise FrameUnavailable(
                f"frame {index} of {run_uid}/{stream}/{field} was not readable in Tiled "
                f"after {self.timeout:g} s ({attempts} attempts; last: {last}){also}. Check that "
                "TiledWriter runs with batch_size=1 and is subscribed before this callback, "
                "and that the server can read the detector's files (readable_storage)."
            ) from exc
        raise AssertionError("stamina returns or raises from its last attempt")

    def _read_registered(self, key: tuple[str, str, str], index: int) -> np.ndarray:
        """One attempt at frame ``index`` through Tiled: IndexError or KeyError while it is not
        registered yet; a reshape error (see the module docstring) drops the run's clients."""
        try:
            arr = self._array(*key)
            if index >= arr.shape[0]:
                arr.refresh()
                self._files.pop(key, None)  # files may have changed
                if index >= arr.shape[0]:
                    raise IndexError(f"{arr.shape[0]} frames so far")
            return self._fetch(key, arr, index)
        except Exception as exc:
            if _transient(exc):
                self._drop_clients(key[0])
            raise


class InMemoryFrameSource:
    """Frames kept in memory, for tests and offline use: `put` then `read`.

    Parameters
    ----------
    timeout
        Seconds `read` waits for a frame not yet `put` before `FrameUnavailable`.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._frames: dict[tuple[str, str, str, int], np.ndarray] = {}
        self._cond = threading.Condition()

    def put(self, run_uid: str, stream: str, field: str, index: int, frame: np.ndarray) -> None:
        """Store one frame (2D, or with leading length-1 axes)."""
        with self._cond:
            self._frames[(run_uid, stream, field, int(index))] = np.asarray(frame)
            self._cond.notify_all()

    def read(self, run_uid: str, stream: str, field: str, index: int) -> np.ndarray:
        """The stored frame, waiting up to ``timeout`` seconds for it."""
        key = (run_uid, stream, field, int(index))
        with self._cond:
            if not self._cond.wait_for(lambda: key in self._frames, timeout=self.timeout):
                raise FrameUnavailable(
                    f"frame {index} of {run_uid}/{stream}/{field} was never put into this "
                    f"InMemoryFrameSource (waited {self.timeout:g} s)."
                )
            return as_frame(self._frames[key])

    def forget(self, run_uid: str) -> None:
        """Nothing is cached per run here; the frames stay readable (`put` owns them)."""
