"""Raw runs that Tiled could not take: TiledWriter's backup files, and their replay into Tiled.

`Session` builds ``TiledWriter(runs, batch_size=1, backup_directory=...)``: when a write to
Tiled fails (the server is down, the network cut), bluesky-tiled-plugins stops writing that run
to Tiled and routes all of its documents, from the start document on, to a JSON Lines file
``<uid prefix>.jsonl`` in the backup folder (`bluesky_tiled_plugins.writing._json_writer.
JSONLinesWriter`), so the scan goes on. The library has no replay of these files (checked in
bluesky-tiled-plugins 2.0.12); this module is that replay, through the library's own writer:

1. a backup is complete once its last document is the run's stop document (a file without one
   is still being written, or was left by a process that died mid-run: it is listed, and
   replayed only when asked, ``include_incomplete``);
2. the part of the run that reached Tiled before the failure (a start document, some events,
   never the stop document) is deleted: the backup holds every document of the run;
3. every document of the file goes through a new ``TiledWriter(runs)`` (no backup of its own:
   a failure leaves the file where it is);
4. once the run in Tiled has its stop document, the file is removed.

`BackupReplayer` does this in the background, in the session's process, with back-off while
Tiled is unreachable (`xrd_bluesky_mask.tiled.retry.Outage` logs the outage once); ``xrd-mask
replay`` does it from a shell. Detector files (HDF5) are not in the backup: the replayed run
registers them where its StreamResource documents say, as TiledWriter did live.

The backup folder is the user's alone (created 0700): runs may be proprietary.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tiled.retry import Outage, refused, unreachable

__all__ = ["BackupFile", "BackupReplayer", "ENV_VAR", "RunBackups", "backup_folder_for",
           "default_backup_dir", "replay_file"]

log = logging.getLogger(__name__)

#: Environment variable naming the run backups' root folder.
ENV_VAR = "XRD_MASK_RUN_BACKUP"


def default_backup_dir() -> Path:
    """``$XRD_MASK_RUN_BACKUP``, else ``run-backup`` in the user state folder (`platformdirs`;
    on Linux ``~/.local/state/xrd-bluesky-mask/run-backup``)."""
    import platformdirs

    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return platformdirs.user_state_path("xrd-bluesky-mask", appauthor=False) / "run-backup"


def backup_folder_for(uri: str, runs_path: str = "") -> Path:
    """The backup folder of the runs container ``runs_path`` on the server at ``uri`` (an
    ``?api_key=`` query is ignored; an embedded server is ``embedded:<catalog folder>``): one
    folder per server and container under `default_backup_dir`, so that a backup is replayed
    into the server it was meant for."""
    from ..sinks.journal import journal_name

    base = uri.split("?", 1)[0].rstrip("/")
    return default_backup_dir() / journal_name(base, runs_path.strip("/"))


@dataclass(frozen=True)
class BackupFile:
    """One run's backup file.

    Attributes
    ----------
    path
        The JSON Lines file.
    uid
        The run's uid (None: the file has no start document).
    documents
        Documents in the file (a last line cut short by a crash is not counted).
    complete
        The last document is the run's stop document.
    exit_status
        The stop document's ``exit_status`` ("" if none).
    """

    path: Path
    uid: str | None
    documents: int
    complete: bool
    exit_status: str = ""

    def describe(self) -> str:
        """One line for the log and the profile."""
        state = (f"complete ({self.exit_status})" if self.complete
                 else "no stop document yet (being written, or its process stopped)")
        return f"run {self.uid or '?'}: {self.documents} documents in {self.path}, {state}"


def _documents(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(name, doc)`` pairs of a backup file; a last line cut short is skipped (logged)."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                log.warning("xrd-mask: %s: its last line is cut short (the writing process "
                            "stopped); the %d documents before it are used", path, n)
                return
            raise
        yield item["name"], item["doc"]


class RunBackups:
    """The backup folder of one Tiled server: what waits there, and its replay.

    Parameters
    ----------
    directory
        The folder TiledWriter's ``backup_directory`` points to (created, 0700).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)

    def files(self) -> list[BackupFile]:
        """The backup files, oldest first."""
        found = []
        paths = sorted(self.directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        for path in paths:
            uid, count, last, status = None, 0, "", ""
            try:
                for name, doc in _documents(path):
                    count += 1
                    last = name
                    if name == "start":
                        uid = doc.get("uid")
                    elif name == "stop":
                        status = str(doc.get("exit_status", ""))
            except (OSError, ValueError, KeyError) as exc:
                log.error("xrd-mask: run backup %s unreadable (%s: %s); left as it is",
                          path, type(exc).__name__, exc)
                continue
            found.append(BackupFile(path, uid, count, last == "stop", status))
        return found

    def waiting(self, include_incomplete: bool = True) -> list[BackupFile]:
        """Backups not yet replayed (complete ones only unless ``include_incomplete``)."""
        return [f for f in self.files() if f.complete or include_incomplete]

    def summary(self) -> str:
        """What waits here, in one sentence ("" if nothing)."""
        files = self.files()
        if not files:
            return ""
        done = sum(f.complete for f in files)
        return (f"{len(files)} raw runs wait in {self.directory} for Tiled ({done} complete, "
                f"replayed automatically when Tiled answers, or `xrd-mask replay`)")

    def replay(self, runs: Any, *, include_incomplete: bool = False) -> list[str]:
        """Replay every complete backup (and the others with ``include_incomplete``) into
        ``runs``; returns the uids written. Stops at the first error (raised: an unreachable
        server, a refused key), leaving that file and the later ones in place."""
        written = []
        for backup in self.waiting(include_incomplete):
            replay_file(runs, backup)
            if backup.uid:
                written.append(backup.uid)
        return written


def replay_file(runs: Any, backup: BackupFile) -> None:
    """Write one backup into ``runs`` with the library's TiledWriter, then remove the file.

    Raises
    ------
    ValueError
        The file has no start document (it is renamed ``*.jsonl.bad``).
    Exception
        The Tiled client's errors (unreachable, refused key): the file stays.
    """
    from bluesky_tiled_plugins import TiledWriter

    if backup.uid is None:
        bad = backup.path.with_suffix(".jsonl.bad")
        backup.path.rename(bad)
        raise ValueError(f"run backup {backup.path} has no start document; renamed {bad.name}")
    uid = backup.uid
    if uid in runs:
        existing = runs[uid]
        if existing.metadata.get("stop") is not None:  # replayed before the file was removed
            log.info("xrd-mask: run %s is already complete in Tiled; removing its backup %s",
                     uid, backup.path)
            backup.path.unlink(missing_ok=True)
            return
        # the part written before the outage: the backup holds every document of the run
        existing.delete(recursive=True, external_only=False)
    t0 = time.monotonic()
    writer = TiledWriter(runs)  # batched: the whole run in a few requests
    for name, doc in _documents(backup.path):
        writer(name, doc)
    if backup.complete and runs[uid].metadata.get("stop") is None:
        raise RuntimeError(f"run {uid} was replayed from {backup.path} but Tiled shows no "
                           "stop document; the file is kept")
    backup.path.unlink(missing_ok=True)
    log.warning("xrd-mask: run %s replayed into Tiled from its backup (%d documents, %.1f s)",
                uid, backup.documents, time.monotonic() - t0)


class BackupReplayer:
    """Replays complete run backups into Tiled in the background (see the module docstring).

    Checks the folder when `notify` is called (the session calls it on every stop document)
    and every ``poll_s`` seconds; while Tiled is unreachable it retries with back-off from
    ``first_wait`` doubling up to ``max_wait`` seconds.

    Parameters
    ----------
    backups
        The backup folder.
    runs
        The Tiled container the runs go to (what TiledWriter writes to).
    poll_s, first_wait, max_wait
        Seconds, as above.
    """

    def __init__(self, backups: RunBackups, runs: Any, *, poll_s: float = 30.0,
                 first_wait: float = 0.5, max_wait: float = 10.0) -> None:
        self.backups, self.runs = backups, runs
        self.poll_s, self.first_wait, self.max_wait = poll_s, first_wait, max_wait
        self.outage = Outage("Tiled", self._detail)
        self._cond = threading.Condition()
        self._wake = True  # look at the folder once at start (a previous session's leftovers)
        self._stopping = False
        self._busy = False
        self._failed: dict[Path, float] = {}  # file -> mtime when it failed (not unreachable)
        self._thread = threading.Thread(target=self._loop, name="xrd-mask-run-backup",
                                        daemon=True)

    def _detail(self) -> str:
        summary = self.backups.summary()
        return f"; {summary}" if summary else ""

    def start(self) -> BackupReplayer:
        """Start the thread; leftovers of an earlier session are logged and replayed."""
        left = self.backups.files()
        if left:
            log.warning("xrd-mask: %s", self.backups.summary())
        self._thread.start()
        return self

    def notify(self, name: str = "stop", doc: Any = None) -> None:
        """Look at the folder now (subscribe to the RunEngine after TiledWriter: on a stop
        document a backup may just have been completed)."""
        if name != "stop":
            return
        if doc is not None:
            path = self.backups.directory / f"{str(doc.get('run_start', '')).split('-')[0]}.jsonl"
            if path.exists():
                log.warning("xrd-mask: run %s did not reach Tiled; its documents wait in %s "
                            "and are replayed when Tiled answers (or `xrd-mask replay`)",
                            doc.get("run_start"), path)
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def _todo(self) -> list[BackupFile]:
        return [f for f in self.backups.waiting(include_incomplete=False)
                if self._failed.get(f.path) != _mtime(f.path)]

    def pending(self) -> list[BackupFile]:
        """Complete backups not replayed yet."""
        return self.backups.waiting(include_incomplete=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no complete backup waits (False after ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if not self._busy and not self._todo():
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._wake = True
                self._cond.notify_all()
                self._cond.wait(0.2 if left is None else min(0.2, left))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the replay in progress, up to ``timeout`` s); what still
        waits is logged with where."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        summary = self.backups.summary()
        if summary:
            log.warning("xrd-mask: %s", summary)

    def _loop(self) -> None:
        wait = self.first_wait
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wake or self._stopping, timeout=self.poll_s)
                if self._stopping:
                    return
                self._wake = False
                self._busy = True
            try:
                again = self._replay_some()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if again:  # Tiled unreachable: back off, then look again
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, timeout=wait)
                    self._wake = True
                wait = min(wait * 2, self.max_wait)
            else:
                wait = self.first_wait

    def _replay_some(self) -> bool:
        """Replay what is complete; True if Tiled was unreachable (try again later)."""
        for backup in self._todo():
            if self._stopping:
                return False
            try:
                replay_file(self.runs, backup)
            except Exception as exc:
                if unreachable(exc):
                    self.outage.failed(f"replay run {backup.uid}", exc, self.first_wait)
                    return True
                self._failed[backup.path] = _mtime(backup.path)
                if refused(exc):
                    log.error("xrd-mask: Tiled refuses this session's API key (%s): run %s "
                              "stays in %s, nothing is lost. Give the right key: `xrd-mask "
                              "replay --tiled URI --api-key KEY --backup %s`.",
                              str(exc).splitlines()[0][:300], backup.uid, backup.path,
                              self.backups.directory)
                    continue
                log.error("xrd-mask: run %s could not be replayed from %s (%s: %s); the file "
                          "stays. Fix the cause, then run `xrd-mask replay`.", backup.uid,
                          backup.path, type(exc).__name__, exc)
                continue
            self.outage.recovered()
        return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0
