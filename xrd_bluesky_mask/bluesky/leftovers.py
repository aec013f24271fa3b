"""What waits on this computer for a Tiled server: results journals and raw-run backups,
listed, reported at start-up, and discarded only when asked.

Live masking keeps results in a journal folder per server and results root
(`xrd_bluesky_mask.sinks.journal`), a `Session` keeps runs Tiled could not take in a backup
folder per server and runs container (`xrd_bluesky_mask.bluesky.backup`). Both are replayed
automatically, but only by a process talking to *that* server: a folder left for a server that
was moved, renamed or retired would wait forever, unseen. So:

- each folder records the server it waits for (``origin.json``: URI without the key, container,
  date; `xrd_bluesky_mask.sinks.journal.write_origin`);
- a callback or worker starting logs, once per process, every other folder that holds
  something, with its server, its age, and the two commands that end the wait
  (`report_leftovers`);
- ``xrd-mask replay --list --all`` lists them (`find_leftovers`), ``xrd-mask replay --tiled URI``
  writes those of one server, ``xrd-mask replay --discard FOLDER`` removes one, never a folder
  another process is using (`discard`). Nothing is ever deleted without that command.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..sinks.journal import read_origin

__all__ = ["STALE_DAYS", "Leftover", "discard", "find_leftovers", "in_use",
           "report_leftovers"]

log = logging.getLogger(__name__)

#: Age, days, beyond which a report adds that the folder's server may no longer exist.
STALE_DAYS = 7

_OP = re.compile(r"\d{12}-(open|write|note|close)\.(json|npz)")
_lock = threading.Lock()
_in_use: set[Path] = set()
_reported: set[Path] = set()


@dataclass(frozen=True)
class Leftover:
    """One folder of results or raw runs waiting for a Tiled server.

    Attributes
    ----------
    kind
        ``"results"`` (a masking journal) or ``"raw runs"`` (TiledWriter's backup).
    folder
        The folder.
    uri, container
        The server (no key) and the results root or runs container it waits for; None when
        the folder predates ``origin.json``.
    items
        Frame results (results) or run files (raw runs) waiting.
    runs
        The run uids concerned.
    since
        When the oldest file waiting was written (UTC).
    """

    kind: str
    folder: Path
    uri: str | None
    container: str | None
    items: int
    runs: tuple[str, ...]
    since: datetime.datetime

    @property
    def age_days(self) -> float:
        """Days since `since`."""
        now = datetime.datetime.now(datetime.UTC)
        return (now - self.since).total_seconds() / 86400

    def describe(self) -> str:
        """What waits, for which server, since when, and the commands that end the wait."""
        what = (f"{self.items} frame results" if self.kind == "results"
                else f"{self.items} raw runs")
        runs = ", ".join(r[:8] for r in self.runs[:5]) + (" ..." if len(self.runs) > 5 else "")
        server = self.uri or "an unknown server (folder made before origin.json)"
        where = "results root" if self.kind == "results" else "runs container"
        container = f" ({where} {self.container or '/'})" if self.container is not None else ""
        stale = (f" ({self.age_days:.0f} days: is that server still there?)"
                 if self.age_days > STALE_DAYS else "")
        option = "--root" if self.kind == "results" else "--catalog"
        replay = (f"`xrd-mask replay --tiled {self.uri} --api-key KEY"
                  f"{f' {option} {self.container}' if self.container else ''}`"
                  if self.uri and not self.uri.startswith("embedded:")
                  else f"`xrd-mask replay --tiled URI --api-key KEY "
                       f"--{'journal' if self.kind == 'results' else 'backup'} {self.folder}` "
                       "(URI: the server that should have them)")
        return (f"{what} of run(s) {runs or '?'} wait for {server}{container} since "
                f"{self.since:%Y-%m-%d %H:%M} UTC{stale}, in {self.folder}. Write them with "
                f"{replay}, or remove them with `xrd-mask replay --discard {self.folder}`.")


def _since(paths: Iterable[Path]) -> datetime.datetime:
    times = [p.stat().st_mtime for p in paths]
    return datetime.datetime.fromtimestamp(min(times), datetime.UTC)


def _journal_leftover(folder: Path) -> Leftover | None:
    files = [f for slot in sorted(folder.glob("slot-*")) if slot.is_dir()
             for f in sorted(slot.iterdir()) if _OP.fullmatch(f.name)]
    if not files:
        return None
    runs: dict[str, None] = {}
    frames = 0
    for f in files:
        try:
            if f.suffix == ".json":
                runs[json.loads(f.read_text())["run"]] = None
            else:
                frames += 1
                import numpy as np

                with np.load(f, allow_pickle=False) as npz:
                    runs[json.loads(npz["header"].tobytes())["run"]] = None
        except (OSError, ValueError, KeyError):
            continue  # being written or removed right now; the count is a report
    origin = read_origin(folder) or {}
    return Leftover("results", folder, origin.get("uri"), origin.get("container"), frames,
                    tuple(runs), _since(files))


def _backup_leftover(folder: Path) -> Leftover | None:
    from .backup import RunBackups

    files = RunBackups(folder).files()
    if not files:
        return None
    origin = read_origin(folder) or {}
    return Leftover("raw runs", folder, origin.get("uri"), origin.get("container"), len(files),
                    tuple(f.uid or "?" for f in files), _since(f.path for f in files))


def leftover_at(folder: str | Path) -> Leftover | None:
    """What waits in one journal or backup folder (None: nothing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if any(folder.glob("slot-*")):
        return _journal_leftover(folder)
    return _backup_leftover(folder)


def find_leftovers(journal_root: str | Path | None = None,
                   backup_root: str | Path | None = None,
                   skip: Iterable[Path] = ()) -> list[Leftover]:
    """Every folder under the journals' and the run backups' roots that holds something
    (defaults: `default_journal_dir`, `default_backup_dir`), oldest first; folders in
    ``skip`` (resolved paths) are not read."""
    from ..sinks.journal import default_journal_dir
    from .backup import default_backup_dir

    skipped = set(skip)
    found = []
    for root in (Path(journal_root or default_journal_dir()),
                 Path(backup_root or default_backup_dir())):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.resolve() in skipped:
                continue
            try:
                leftover = leftover_at(folder)
            except OSError as exc:
                log.warning("xrd-mask: cannot read %s (%s)", folder, exc)
                continue
            if leftover is not None:
                found.append(leftover)
    return sorted(found, key=lambda x: x.since)


def in_use(folder: str | Path) -> None:
    """Note a folder this process replays itself (never reported as left over)."""
    with _lock:
        _in_use.add(Path(folder).resolve())


def report_leftovers(exclude: Iterable[str | Path] = ()) -> list[Leftover]:
    """Log (warning, once per folder and process) every folder that waits for a server and
    that this process does not replay itself (``exclude``, and folders noted by `in_use`)."""
    for folder in exclude:
        in_use(folder)
    with _lock:
        skip = _in_use | _reported
    try:
        found = find_leftovers(skip=skip)
    except OSError as exc:
        log.warning("xrd-mask: could not look for results left for other servers (%s)", exc)
        return []
    new = []
    with _lock:
        for leftover in found:
            key = leftover.folder.resolve()
            if key in _in_use or key in _reported:
                continue
            _reported.add(key)
            new.append(leftover)
    for leftover in new:
        log.warning("xrd-mask: left by an earlier session: %s", leftover.describe())
    return new


def discard(folder: str | Path) -> Leftover | None:
    """Remove a journal or backup folder and what waits in it; returns what was removed.

    Raises
    ------
    BlockingIOError
        A running process holds one of the journal's slots (it is replaying it).
    ValueError
        ``folder`` is neither a results journal nor a run-backup folder.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    is_journal = any(folder.glob("slot-*"))
    if not folder.is_dir() or not (is_journal or any(folder.glob("*.jsonl*"))
                                   or (folder / "origin.json").exists()):
        raise ValueError(f"{folder} is not a results journal or a run-backup folder of "
                         "xrd-mask; `xrd-mask replay --list --all` lists those")
    leftover = leftover_at(folder)
    locks = []
    try:
        for path in sorted(folder.glob("slot-*.lock")):
            lock = FileLock(path)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise BlockingIOError(
                    f"{folder} is in use by a running session or worker ({path.name}); stop it "
                    "first (it writes these results itself when its server answers)") from None
            locks.append(lock)
        shutil.rmtree(folder)
    finally:
        for lock in locks:
            lock.release()
    log.warning("xrd-mask: removed %s%s", folder,
                f" ({leftover.describe().split(', in ')[0]})" if leftover else "")
    return leftover
