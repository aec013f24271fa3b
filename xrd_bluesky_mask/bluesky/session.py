"""One Bluesky session that writes to Tiled and masks live: RunEngine, TiledWriter, callback.

The live demo (`xrd_bluesky_mask.apps.live`), the beamline profile
(`xrd_bluesky_mask.apps.profile`), the benchmarks and the test fixtures
(`xrd_bluesky_mask.testing`) all need the same wiring, in the same order, and the same
shutdown; `Session` is that wiring, written once:

1. a Tiled client: given (``client=``), opened on a server (``uri=``), or on an embedded server
   the session starts and owns (`xrd_bluesky_mask.tiled.server.start_local_server`);
2. a RunEngine (``call_returns_result=True`` unless asked otherwise) with
   ``TiledWriter(runs, batch_size=1, backup_directory=...)`` subscribed first, so every frame
   is readable in Tiled as soon as its document is emitted (the default batch size holds
   everything back until the stop document), and a scan goes on when Tiled goes away: the run
   is kept in a backup file in the user's state folder and replayed into Tiled when it answers
   again (`xrd_bluesky_mask.bluesky.backup`, a thread of this session);
3. optionally the simulated detector (`add_detector`) on the RunEngine's event loop;
4. optionally `XRDMaskCallback` (`start_masking`), subscribed *after* TiledWriter: the
   RunEngine calls callbacks in subscription order, and a callback subscribed before TiledWriter
   is told about frames Tiled does not have yet;
5. `wait`: the results and the raw runs delivered to Tiled (or, after a timeout, what waits
   and where);
6. a clean stop (`close`, idempotent, also on leaving ``with``): queued masking finished, the
   run backups' replay stopped (what waits is logged), the RunEngine halted if a plan is
   still open and its event-loop thread joined
   (`stop_run_engine`), the embedded server stopped.

Example
-------
>>> with Session(readable_storage=["/tmp/raw"]) as s:           # doctest: +SKIP
...     det = s.add_detector(shape=(256, 256))
...     s.start_masking("classical")
...     uid = s.RE(count([det], num=3), **det.start_metadata()).run_start_uids[0]
...     s.stop_masking(timeout=60)
...     print(s.uri, find_results(s.client, uid).metadata["status"])

The callback module itself (`xrd_bluesky_mask.bluesky.callback`) never imports this one: it
stays free of torch, tiled and pyFAI, while a session pulls in bluesky, Tiled and ophyd-async.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tiled.nodes import container_at
from .backup import BackupReplayer, RunBackups
from .shutdown import close_at_exit, stop_run_engine

if TYPE_CHECKING:

    from ..tiled.server import LocalTiledServer
    from .callback import XRDMaskCallback
    from .devices import SimXRDDetector

__all__ = ["Session"]

log = logging.getLogger(__name__)


class Session:
    """A RunEngine writing to Tiled through TiledWriter, with live masking on demand.

    Parameters
    ----------
    client
        A Tiled client to use (not closed by the session). Give at most one of ``client`` and
        ``uri``; with neither, the session starts an embedded server and owns it.
    uri
        A Tiled server to connect to (`xrd_bluesky_mask.tiled.connect.connect`: fails within
        seconds with `TiledConnectionError` / `TiledAuthError`).
    api_key
        The key for ``uri`` (None: the one in ``uri`` or ``$TILED_API_KEY``), or the embedded
        server's key (None: a random one).
    directory
        Embedded server: where its catalog and data go (kept after `close`); None: a temporary
        directory deleted on `close`.
    readable_storage
        Embedded server: directories of external files it may serve (the detector's HDF5
        files). The first one is also `add_detector`'s default directory.
    server_mode
        Embedded server: ``"thread"`` (in this process) or ``"process"`` (a ``tiled serve``
        child process that does not compete with the RunEngine for the GIL).
    runs_path
        Container the runs go to, e.g. ``"raw"`` (created if missing); empty: the root.
    metadata
        Added to ``RE.md`` (every start document).
    md_store
        Keep ``RE.md`` (scan_id, ...) across sessions in this directory
        (`bluesky.utils.PersistentDict`); None: in memory only.
    backup_directory
        Where TiledWriter keeps a run it could not write to Tiled (JSON Lines, replayed when
        Tiled answers again): ``"auto"``, a folder per server and runs container under
        ``$XRD_MASK_RUN_BACKUP`` (default: the user state folder,
        ``~/.local/state/xrd-bluesky-mask/run-backup`` on Linux); a folder; or None for no
        backup (a Tiled outage then fails the scan, after the Tiled client's retries).
    replay_poll_s
        Seconds between looks at the backup folder for runs to replay (besides every stop
        document); while Tiled is unreachable the replay backs off from 0.5 s up to
        ``replay_max_wait`` seconds.
    replay_max_wait
        Longest wait between replay attempts during an outage, seconds.
    call_returns_result
        ``RE(plan)`` returns a `bluesky.RunEngineResult` (run uids, exit status, the plan's
        return value); False: the run uids only, bluesky's older default (the profile keeps
        it, so ``uids = RE(count([det], 3))`` works at the beamline as before).

    Attributes
    ----------
    client, runs
        Tiled root client, and the container TiledWriter writes the runs to.
    server
        The embedded `LocalTiledServer`, or None.
    RE, tiled_writer
        The RunEngine and its TiledWriter (subscribed first).
    backups, replayer
        The run backups (`RunBackups`) and their background replay (`BackupReplayer`), or
        None without a backup.
    det, callback
        The latest `add_detector` detector and the current masking callback (or None).

    Raises
    ------
    TiledConnectionError, TiledAuthError
        ``uri`` does not answer, or refuses the key; the embedded server does not start.
    ValueError
        Both ``client`` and ``uri`` given, or an embedded server's ``api_key`` that is not
        alphanumeric.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        uri: str | None = None,
        api_key: str | None = None,
        directory: str | Path | None = None,
        readable_storage: Sequence[str | Path] = (),
        server_mode: str = "thread",
        runs_path: str = "",
        metadata: Mapping[str, Any] | None = None,
        md_store: str | Path | None = None,
        backup_directory: str | Path | None = "auto",
        replay_poll_s: float = 30.0,
        replay_max_wait: float = 10.0,
        call_returns_result: bool = True,
    ) -> None:
        if client is not None and uri:
            raise ValueError("Session: give a Tiled client or a uri, not both")
        self.client: Any = None
        self.runs: Any = None
        self.uri = ""
        self.api_key: str | None = None
        self.server: LocalTiledServer | None = None
        self.RE: Any = None
        self.tiled_writer: Any = None
        self.backups: RunBackups | None = None
        self.replayer: BackupReplayer | None = None
        self.callback: XRDMaskCallback | None = None
        self.det: SimXRDDetector | None = None
        self.readable_storage = [Path(p).resolve() for p in readable_storage]
        self._callback_token: int | None = None
        self._previous_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        try:
            self.client, self.uri, self.api_key = self._open_tiled(
                client, uri, api_key, directory, server_mode)
            self.runs = container_at(self.client, runs_path)
            if backup_directory is not None:
                self.backups = RunBackups(self._backup_folder(backup_directory, runs_path))
                self._note_backup_folder(runs_path)
            self.RE, self.tiled_writer = self._make_run_engine(metadata, md_store,
                                                               call_returns_result)
            if self.backups is not None:
                self.replayer = BackupReplayer(self.backups, self.runs, poll_s=replay_poll_s,
                                               max_wait=replay_max_wait).start()
                self.RE.subscribe(self.replayer.notify, "stop")
        except BaseException:
            self.close()
            raise

    # -- construction ---------------------------------------------------------------------
    def _open_tiled(self, client: Any, uri: str | None, api_key: str | None,
                    directory: str | Path | None, server_mode: str) -> tuple[Any, str, str | None]:
        """``(client, uri without key, api key)`` from a client, a URI or a new server."""
        from ..tiled.connect import connect
        from ..tiled.server import start_local_server

        if client is not None:
            context = client.context
            return client, str(context.api_uri).rstrip("/"), context.api_key
        if uri:
            client = connect(uri, api_key)
            return client, uri.split("?", 1)[0], client.context.api_key
        self.server = start_local_server(directory, api_key=api_key,
                                         readable_storage=self.readable_storage,
                                         mode=server_mode)
        return self.server.client(), self.server.uri, self.server.api_key

    def _backup_folder(self, backup_directory: str | Path, runs_path: str) -> Path:
        """The run backup folder: ``"auto"`` is one per server and runs container (an
        embedded server is known by its catalog folder, not by its port, which changes)."""
        from .backup import backup_folder_for

        if str(backup_directory) != "auto":
            return Path(backup_directory)
        if self.server is not None:
            return backup_folder_for(f"embedded:{self.server.directory.resolve()}", runs_path)
        return backup_folder_for(self.uri, runs_path)

    def _note_backup_folder(self, runs_path: str) -> None:
        """Record which server the backup folder is for, and that this session replays it."""
        from ..sinks.journal import write_origin
        from .leftovers import in_use

        assert self.backups is not None
        where = (f"embedded:{self.server.directory.resolve()}" if self.server is not None
                 else self.uri)
        write_origin(self.backups.directory, where, runs_path)
        in_use(self.backups.directory)

    def _make_run_engine(self, metadata: Mapping[str, Any] | None, md_store: str | Path | None,
                         call_returns_result: bool) -> tuple[Any, Any]:
        """A RunEngine with ``TiledWriter(runs, batch_size=1, backup_directory=...)``
        subscribed first."""
        from bluesky import RunEngine
        from bluesky.run_engine import get_bluesky_event_loop
        from bluesky_tiled_plugins import TiledWriter

        # TiledWriter contacts the server: build it first, so that a refused key or a dead
        # server leaves no RunEngine (and no event-loop thread) behind
        backup = str(self.backups.directory) if self.backups is not None else None
        writer = TiledWriter(self.runs, batch_size=1, backup_directory=backup)
        md: Any = {}  # a dict, or bluesky's PersistentDict (a MutableMapping, not a dict)
        if md_store is not None:
            from bluesky.utils import PersistentDict

            Path(md_store).mkdir(parents=True, exist_ok=True)
            md = PersistentDict(str(md_store))
        self._previous_loop = get_bluesky_event_loop()
        RE = RunEngine(md, call_returns_result=call_returns_result)
        RE.md.update(metadata or {})
        RE.subscribe(writer)
        return RE, writer

    # -- detector and masking -------------------------------------------------------------
    def add_detector(self, directory: str | Path | None = None, **kwargs: Any) -> SimXRDDetector:
        """A simulated area detector connected on this RunEngine's loop (`make_detector`).

        ``directory`` (default: the first of ``readable_storage``) receives its HDF5 files; the
        Tiled server must be able to read it. Other keywords go to `make_detector` (shape,
        presets, seed, dtype, n_unique, bad_frames, exposure_s, name). The detector also
        becomes ``det``.
        """
        from .devices import make_detector

        if directory is None:
            if not self.readable_storage:
                raise ValueError("add_detector: give the directory for the detector's files "
                                 "(the Tiled server must be able to read it)")
            directory = self.readable_storage[0]
        self.det = make_detector(directory, run_engine=self.RE, **kwargs)
        return self.det

    def start_masking(self, masker: Any = None, **kwargs: Any) -> XRDMaskCallback:
        """Subscribe a new `XRDMaskCallback` on ``runs``, after TiledWriter; returns it.

        ``masker`` and the keywords go to `XRDMaskCallback` (None: the U-Net with the active
        model). A callback already running is stopped first (its queued frames finished).
        """
        from .callback import XRDMaskCallback

        self.stop_masking()
        callback = XRDMaskCallback(self.runs, masker=masker, **kwargs)
        self._callback_token = self.RE.subscribe(callback)
        self.callback = callback
        return callback

    def stop_masking(self, timeout: float | None = 30.0) -> bool:
        """Unsubscribe the masking callback and finish its queued frames (up to ``timeout``
        s; None: no limit). True if everything it was given is done (or there was none)."""
        callback, self.callback = self.callback, None
        token, self._callback_token = self._callback_token, None
        if token is not None and self.RE is not None:
            self.RE.unsubscribe(token)
        return callback.close(timeout=timeout) if callback is not None else True

    @contextlib.contextmanager
    def masking(self, masker: Any = None, *, timeout: float | None = 120.0,
                **kwargs: Any) -> Iterator[XRDMaskCallback]:
        """`start_masking` for the scans inside a ``with`` block, `stop_masking` at its end."""
        callback = self.start_masking(masker, **kwargs)
        try:
            yield callback
        finally:
            if self.callback is callback:
                self.stop_masking(timeout)

    # -- delivery -------------------------------------------------------------------------
    def waiting(self) -> str:
        """What has not reached Tiled yet, and where it waits ("" if nothing)."""
        parts = []
        if self.callback is not None:
            parts.append(self.callback.waiting())
        if self.backups is not None:
            parts.append(self.backups.summary())
        return "; ".join(p for p in parts if p)

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the masking results and the raw runs are in Tiled: the callback's
        journal delivered, no run backup waiting (up to ``timeout`` s; None: no limit). After
        the timeout, False and a warning that says what waits and where."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        done = self.replayer.wait(left()) if self.replayer is not None else True
        if self.callback is not None:
            done = self.callback.wait(left(), warn=False) and done
        if not done:
            log.warning("xrd-mask: not everything is in Tiled after %g s: %s", timeout,
                        self.waiting() or "still being written")
        return done

    # -- shutdown -------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        """Finish queued masking (up to ``timeout`` s), stop the RunEngine and its loop
        thread, stop the embedded server. Idempotent; each step runs even if one fails."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.stop_masking(timeout):
                log.warning("xrd-mask: masking still running after %g s at close; its "
                            "results are partial (xrd-mask reprocess completes them)", timeout)
        finally:
            replayer, self.replayer = self.replayer, None
            if replayer is not None:
                replayer.close()
            try:
                RE, self.RE = self.RE, None
                if RE is not None:
                    stop_run_engine(RE)
                    self._restore_event_loop(RE)
            finally:
                server, self.server = self.server, None
                if server is not None:
                    server.close()

    def _restore_event_loop(self, RE: Any) -> None:
        """Give bluesky's global event loop (what ophyd-async connects devices on by default)
        back to the RunEngine made before this one, if that one still runs."""
        from bluesky.run_engine import get_bluesky_event_loop, set_bluesky_event_loop

        previous = self._previous_loop
        if get_bluesky_event_loop() is RE.loop and previous is not None and previous.is_running():
            set_bluesky_event_loop(previous)

    def close_at_exit(self) -> None:
        """Run `close` when the interpreter exits
        (`xrd_bluesky_mask.bluesky.shutdown.close_at_exit`)."""
        close_at_exit(self.close)

    @property
    def closed(self) -> bool:
        """True once `close` has run."""
        return self._closed

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded" if self.server is not None else "remote"
        return f"Session(uri={self.uri!r} ({where}), closed={self._closed})"
