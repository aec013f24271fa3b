"""The beamline IPython profile's logic: building RE, Tiled, detector and masking from its
settings (`profile_settings`).

``profiles/profile_xrd/startup/*.py`` are a few lines each; they call into this module, so the
same session can be built (and tested) without IPython::

    xrd = Beamline(load_settings("xrd_settings.toml"))
    xrd.connect_tiled()        # Tiled client: settings/env URI and key, else the embedded server
    RE = xrd.make_run_engine() # its Session's RunEngine, TiledWriter(batch_size=1) subscribed
    det = xrd.make_detector()  # the simulated area detector
    xrd.start_masking()        # XRDMaskCallback subscribed after TiledWriter
    print(xrd.banner())
    RE(count([det], 3))
    xrd.close()
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputFileError, XRDMaskError
from .profile_settings import ProfileSettings

if TYPE_CHECKING:
    from ..bluesky.session import Session

__all__ = ["Beamline"]

log = logging.getLogger(__name__)


class Beamline:
    """What the profile builds, in order, and how to shut it down (`close`, also at exit).

    The wiring itself is a `Session` (`xrd_bluesky_mask.bluesky.session`, shared with the demo,
    the benchmarks and the tests): `connect_tiled` opens it (Tiled client, RunEngine with
    TiledWriter), `make_detector` and `start_masking` add to it. Beamline adds what is the
    profile's own: the settings, the fallback to the embedded server, the masker that cannot
    load turning masking off, the banner.

    Attributes
    ----------
    settings
        The `ProfileSettings`.
    session
        The `Session` (None until `connect_tiled`).
    client, runs, uri, server
        Tiled root client, the container runs go to, the server URI (no key), and the embedded
        `LocalTiledServer` (None for a remote server).
    RE, tiled_writer
        RunEngine and its TiledWriter subscription.
    det
        The detector.
    masker, callback, masking_error
        The masker, the subscribed `XRDMaskCallback`, or why masking is off.
    """

    def __init__(self, settings: ProfileSettings) -> None:
        self.settings = settings
        self.session: Session | None = None
        self.det: Any = None
        self.masker: Any = None
        self.masking_error = ""
        self.notes: list[str] = []

    @property
    def client(self) -> Any:
        """The Tiled root client (None before `connect_tiled`)."""
        return self.session.client if self.session is not None else None

    @property
    def runs(self) -> Any:
        """The container runs go to (``tiled.runs_path``; the root by default)."""
        return self.session.runs if self.session is not None else None

    @property
    def uri(self) -> str:
        """The Tiled server's URI, without the key ("" before `connect_tiled`)."""
        return self.session.uri if self.session is not None else ""

    @property
    def server(self) -> Any:
        """The embedded `LocalTiledServer`, or None (a remote server, or not connected)."""
        return self.session.server if self.session is not None else None

    @property
    def RE(self) -> Any:  # noqa: N802 (the name every Bluesky session uses)
        """The RunEngine (None before `connect_tiled`)."""
        return self.session.RE if self.session is not None else None

    @property
    def tiled_writer(self) -> Any:
        """The RunEngine's TiledWriter (``batch_size=1``)."""
        return self.session.tiled_writer if self.session is not None else None

    @property
    def callback(self) -> Any:
        """The subscribed `XRDMaskCallback`, or None (masking off or not started)."""
        return self.session.callback if self.session is not None else None

    @property
    def raw_dir(self) -> Path:
        """Where the simulated detector writes its HDF5 files."""
        return self.settings.data_path / "raw"

    # -- Tiled and RunEngine -------------------------------------------------------------
    def connect_tiled(self) -> Any:
        """Connect to ``tiled.uri`` (key from settings or ``$TILED_API_KEY``), or start the
        embedded server when no URI is set, and open the session on it (RunEngine with
        TiledWriter, see `make_run_engine`); returns the root client.

        Raises
        ------
        TiledConnectionError, TiledAuthError
            The configured server does not answer (and ``fallback_to_embedded`` is off), or
            refuses the key.
        """
        from ..bluesky.session import Session
        from ..errors import TiledAuthError, TiledConnectionError

        if self.session is not None:
            return self.session.client
        t, rs = self.settings.tiled, self.settings.run_engine
        common: dict[str, Any] = {
            "runs_path": t.runs_path, "metadata": rs.metadata,
            "md_store": (self.settings.data_path / "runengine-md" if rs.persist_metadata
                         else None),
            "call_returns_result": False,  # RE(plan) returns the run uids, as before
        }
        if t.uri:
            try:
                self.session = Session(uri=t.uri, api_key=t.api_key or None, **common)
            except TiledConnectionError as exc:
                if not t.fallback_to_embedded or isinstance(exc, TiledAuthError):
                    raise
                self.notes.append(f"{t.uri} did not answer; using the embedded server "
                                  "(fallback_to_embedded = true)")
        if self.session is None:
            directory = (self.settings.path(t.embedded_directory) if t.embedded_directory
                         else self.settings.data_path / "tiled")
            self.raw_dir.mkdir(parents=True, exist_ok=True)
            self.session = Session(directory=directory, readable_storage=[self.raw_dir],
                                   server_mode=t.embedded_mode,
                                   api_key=self._kept_key(directory), **common)
        return self.session.client

    def _kept_key(self, directory: Path) -> str | None:
        """The embedded server's API key, kept in its catalog folder across sessions
        (`xrd_bluesky_mask.tiled.api_keys.kept_api_key`); None (share the running key) when a
        server with another key already runs on a thread of this process."""
        from ..tiled.api_keys import kept_api_key
        from ..tiled.server import in_process_api_key

        key = kept_api_key(directory)
        running = in_process_api_key()
        if self.settings.tiled.embedded_mode == "thread" and running not in (None, key):
            self.notes.append("another Tiled server runs in this process: the embedded server "
                              "shares its API key, not the one kept with the catalog")
            return None
        return key

    def make_run_engine(self) -> Any:
        """The session's RunEngine, with ``TiledWriter(runs, batch_size=1)`` subscribed (frames
        readable as they are written, which the masking callback needs); ``RE(plan)`` returns
        the run uids. ``run_engine.metadata`` is in ``RE.md`` (kept across sessions in
        ``<data_dir>/runengine-md`` with ``persist_metadata``)."""
        if self.session is None:
            raise RuntimeError("connect_tiled() must run before make_run_engine()")
        return self.session.RE

    # -- detector ------------------------------------------------------------------------
    def make_detector(self) -> Any:
        """The simulated area detector (`make_detector`), writing HDF5 files to ``raw/``;
        None for ``kind = "none"`` (set ``det`` yourself, see 30-detector.py)."""
        d = self.settings.detector
        if d.kind == "none":
            return None
        if self.session is None:
            raise RuntimeError("make_run_engine() must run before make_detector()")
        self.det = self.session.add_detector(
            self.raw_dir, shape=d.shape, presets=d.presets, seed=d.seed, dtype=d.dtype,
            n_unique=d.n_unique, exposure_s=d.exposure_s, name=d.name)
        return self.det

    # -- masking -------------------------------------------------------------------------
    def make_masker(self) -> Any:
        """The masker of the settings (the U-Net loads ``masking.model`` or the packaged
        model; its checksum is verified)."""
        from ..masking import get_masker

        m = self.settings.masking
        kwargs: dict[str, Any] = {}
        if m.model:
            if m.masker != "unet":
                raise XRDMaskError(f"masking.model is set but masking.masker is {m.masker!r}; "
                                   "a model goes with masker = 'unet'")
            kwargs["model"] = self.settings.path(m.model)
        return get_masker(m.masker, **kwargs)

    def start_masking(self) -> Any:
        """Build the masker and subscribe `XRDMaskCallback` (after TiledWriter).

        A masker that cannot be built (no model, torch missing) turns masking off with the
        reason in ``masking_error`` and the banner, instead of stopping the profile.
        """
        m = self.settings.masking
        if not m.enabled:
            self.masking_error = "disabled in the settings (masking.enabled = false)"
            return None
        if self.session is None:
            raise RuntimeError("make_run_engine() must run before start_masking(): the "
                               "callback must be subscribed after TiledWriter")
        try:
            self.masker = self.make_masker()
        except Exception as exc:
            self.masking_error = f"masker {m.masker!r} unusable: {type(exc).__name__}: {exc}"
            log.error("xrd-mask: %s", self.masking_error)
            return None
        poni = self.settings.path(m.poni) if m.poni else None
        if poni is not None and not poni.is_file():
            raise InputFileError(f"masking.poni = {m.poni!r}: {str(poni)!r} not found")
        return self.session.start_masking(self.masker, poni=poni, root=m.root,
                                          frame_timeout=m.frame_timeout_s,
                                          if_misoriented=m.if_misoriented)

    def live_view(self) -> Any:
        """Subscribe a `LiveSpotView` to the masking callback's result documents: spot count,
        masked share and texture index against frame, drawn as each frame's results are
        written (None when masking is off or ``masking.live_view = false``)."""
        if self.callback is None or not self.settings.masking.live_view:
            return None
        from .live_view import LiveSpotView

        view = LiveSpotView()
        self.callback.subscribe(view)
        return view

    def results(self, uid: Any = -1, timeout: float = 60.0) -> Any:
        """The derived container of run ``uid``: a uid, a BlueskyRun, or -1 for the latest run in
        ``runs`` (-2 the one before, ...); first waits (up to ``timeout`` s) until the results
        of the frames seen so far and the raw runs are *in Tiled* (`Session.wait`: the masking
        journal delivered, runs kept in TiledWriter's backup during an outage replayed);
        after the timeout a warning says what waits and where, and the node is as far as
        it got."""
        from ..tiled.results import find_results

        if self.session is not None:
            self.session.wait(timeout)  # after the timeout it logs what waits and where
        if isinstance(uid, int):
            from tiled.queries import SpecsQuery

            if uid >= 0:
                raise ValueError(f"uid: a run uid, or -1 (latest run), -2, ...; got {uid}")
            newest_first = self.runs.search(SpecsQuery(["BlueskyRun"])).sort(("start.time", -1))
            if len(newest_first) < -uid:
                raise KeyError(f"no run {uid}: {len(newest_first)} runs in {self.runs.uri}")
            uid = newest_first.values()[-uid - 1]
        return find_results(self.runs, uid, root=self.settings.masking.root)

    def waiting(self) -> str:
        """What has not reached Tiled yet and where it waits ("" if nothing): masking results
        in the journal, raw runs in TiledWriter's backup (`Session.waiting`)."""
        return self.session.waiting() if self.session is not None else ""

    # -- banner and shutdown ------------------------------------------------------------
    def banner(self, plans: list[str] | None = None, plans_note: str = "") -> str:
        """A few lines saying what is active."""
        t = self.settings.tiled
        lines = ["xrd-bluesky-mask beamline profile"]
        if self.server is not None:
            where = f"embedded, catalog in {self.server.directory}"
        else:
            where = "remote" if self.uri else "not connected"
        runs = f", runs in '{t.runs_path}'" if t.runs_path else ""
        lines.append(f"  Tiled     {self.uri or '-'} ({where}{runs})")
        if self.det is not None and hasattr(self.det, "generator"):
            g = self.det.generator
            lines.append(f"  detector  {self.det.name}: simulated {g.shape[0]} x {g.shape[1]} "
                         f"{g.dtype.name}, files in {self.raw_dir}")
        elif self.det is not None:
            lines.append(f"  detector  {getattr(self.det, 'name', self.det)}")
        else:
            lines.append("  detector  none (define `det` in 30-detector.py)")
        if self.callback is not None:
            s = self.masker.settings()
            model = (f", model {s['model_id']} (sha256 {str(s.get('model_sha256'))[:12]})"
                     if s.get("model_id") else "")
            lines.append(f"  masking   {self.masker.name}{model} -> "
                         f"{self.settings.masking.root}/<run uid>")
        else:
            lines.append(f"  masking   OFF: {self.masking_error or 'not started'}")
        session = self.session
        if session is not None and session.backups is not None:
            lines.append(f"  outage    runs Tiled cannot take wait in {session.backups.directory}"
                         " (replayed when it answers, or `xrd-mask replay`); results in "
                         "the journal; xrd.waiting() says what waits")
        if session is not None and (waiting := session.waiting()):
            lines.append(f"  waiting   {waiting}")
        if plans:
            lines.append(f"  plans     {', '.join(plans)}")
        if plans_note:
            lines.append(f"  note      {plans_note}")
        lines += [f"  note      {n}" for n in self.notes]
        if self.server is not None:  # what reaches these runs from outside, now and later
            import shlex

            key = self.server.api_key
            lines.append(f"  api key   {key}   (export TILED_URI={self.uri} "
                         f"TILED_API_KEY={shlex.quote(key)})")
            lines.append("  reprocess in a shell with those exports, while this session runs: "
                         "xrd-mask reprocess UID; here: reprocess(tiled_client, [uid])")
            lines.append(f"  reopen    xrd-mask serve {shlex.quote(str(self.server.directory))}"
                         f" -r {shlex.quote(str(self.raw_dir))}   (after exit: serves this "
                         "catalog again)")
        if self.settings.source:
            lines.append(f"  settings  {self.settings.source}")
        return "\n".join(lines)

    def close_at_exit(self) -> None:
        """Run `close` when the interpreter exits, before it waits for the embedded server's
        (non-daemon) thread: with `atexit` alone, exiting IPython would hang."""
        from ..bluesky.shutdown import close_at_exit

        close_at_exit(self.close)

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued masking (up to ``timeout`` s), stop the callback, the RunEngine's loop
        and the embedded server (`Session.close`). Idempotent."""
        session, self.session = self.session, None
        if session is not None:
            session.close(timeout)
