"""The embedded Tiled server: started here, on 127.0.0.1 and a free port, for this session.

`start_local_server` runs a writable Tiled server (SQLite catalog, zarr/DuckDB storage in a
given or temporary directory) on 127.0.0.1 and a free port: in this process (it wraps
`tiled.server.SimpleTiledServer`) or as a ``tiled serve catalog`` child process
(`xrd_bluesky_mask.tiled.serve_process.TiledProcess`, the one ``tiled serve`` launcher, which
the tests also use). Its client comes from `xrd_bluesky_mask.tiled.connect.connect`; the key
kept with a catalog from `xrd_bluesky_mask.tiled.api_keys.kept_api_key`.

Every server started here streams updates to websocket subscribers (``xrd-mask watch``):
SimpleTiledServer (the thread mode: the demo's, the beamline profile's, ``xrd-mask serve``'s)
turns tiled's in-memory streaming cache on itself, and `TiledProcess` serves a catalog through a
config file that does (`TiledProcess.catalog_config`).

Example
-------
>>> with start_local_server(readable_storage=["/data/raw"]) as server:  # doctest: +SKIP
...     client = server.client()
...     print(server.uri, server.api_key)
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TiledConnectionError
from .api_keys import check_api_key
from .connect import connect
from .serve_process import TiledProcess

__all__ = ["LocalTiledServer", "in_process_api_key", "start_local_server"]

log = logging.getLogger(__name__)


def in_process_api_key() -> str | None:
    """The key of the embedded server running on a thread of this process, if any: Tiled keeps
    one key per process, so another thread server started here must share it."""
    running = next(iter(_IN_PROCESS), None)
    return running.api_key if running is not None else None


class LocalTiledServer:
    """A running local Tiled server (see `start_local_server`).

    Attributes
    ----------
    uri
        Base URI without the key, e.g. ``http://127.0.0.1:PORT/api/v1``.
    api_key
        The single-user API key (alphanumeric).
    directory
        Catalog (``catalog.db``), data (``data/``) and logs.
    port
        TCP port on 127.0.0.1.
    mode
        ``"thread"`` (in this process) or ``"process"`` (a ``tiled serve`` child process).
    """

    def __init__(self, *, uri: str, api_key: str, directory: Path, port: int, mode: str,
                 closer: Any) -> None:
        self.uri, self.api_key, self.directory = uri, api_key, Path(directory)
        self.port, self.mode, self._closer = port, mode, closer

    @property
    def uri_with_key(self) -> str:
        """``uri`` with ``?api_key=...``: what `tiled.client.from_uri` needs alone."""
        return f"{self.uri}?api_key={self.api_key}"

    @property
    def web_ui_link(self) -> str:
        """Browser link to the Tiled web UI, key included."""
        return f"{self.uri.rsplit('/api', 1)[0]}?api_key={self.api_key}"

    def client(self) -> Any:
        """A new `tiled.client` root container on this server."""
        return connect(self.uri, self.api_key)

    def close(self) -> None:
        """Stop the server (a temporary directory is deleted with it); idempotent."""
        closer, self._closer = self._closer, None
        if closer is not None:
            _IN_PROCESS.discard(self)
            closer()

    def __enter__(self) -> LocalTiledServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"LocalTiledServer(uri={self.uri!r}, mode={self.mode!r}, "
                f"directory={str(self.directory)!r})")


def start_local_server(
    directory: str | Path | None = None,
    *,
    api_key: str | None = None,
    readable_storage: Sequence[str | Path] = (),
    mode: str = "thread",
    startup_timeout: float = 60.0,
) -> LocalTiledServer:
    """Start a writable Tiled server on 127.0.0.1 and a free port.

    Parameters
    ----------
    directory
        Where the catalog, data and logs go; kept after `LocalTiledServer.close` (reuse it to
        find earlier runs). None: a temporary directory deleted on close.
    api_key
        Alphanumeric API key; None makes a random one.
    readable_storage
        Directories of external files (e.g. the detector's HDF5 directory) the server may read.
    mode
        ``"thread"``: `tiled.server.SimpleTiledServer` in this process (3-7 s to start).
        ``"process"``: a ``tiled serve catalog`` child process, so that serving requests does
        not compete with the RunEngine for this process's GIL (5-15 s to start).
    startup_timeout
        Seconds to wait for a ``"process"`` server to answer ``/healthz``.

    Returns
    -------
    LocalTiledServer
        Close it (or use it as a context manager) when done.

    Raises
    ------
    ValueError
        If ``api_key`` is not alphanumeric or ``mode`` is unknown.
    TiledConnectionError
        If the server does not start (the message names its log file).
    """
    if api_key is not None:
        api_key = check_api_key(api_key)
    if mode == "thread" and _IN_PROCESS:
        # Tiled's server settings are one object per process: every SimpleTiledServer in it
        # answers to the key of the one started last. Share it rather than lock the others out.
        running = next(iter(_IN_PROCESS)).api_key
        if api_key is not None and api_key != running:
            raise ValueError(
                "another Tiled server already runs in this process with another API key, and "
                "Tiled keeps one key per process; give api_key=None (share its key) or "
                "mode='process'")
        api_key = running
    api_key = api_key if api_key is not None else secrets.token_hex(16)
    paths = [str(Path(p).resolve()) for p in readable_storage]
    for p in paths:
        Path(p).mkdir(parents=True, exist_ok=True)
    if mode == "process":
        local = _start_process(directory, api_key, paths, startup_timeout)
    elif mode == "thread":
        local = _start_thread(directory, api_key, paths)
    else:
        raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}")
    log.info("Tiled server at %s (directory %s)", local.uri, local.directory)
    if mode == "thread":
        _IN_PROCESS.add(local)
    return local


#: Servers started in this process with ``mode="thread"`` and not closed yet.
_IN_PROCESS: weakref.WeakSet[LocalTiledServer] = weakref.WeakSet()


def _start_thread(directory: str | Path | None, api_key: str, paths: list[str]) -> Any:
    from tiled.server import SimpleTiledServer

    storage: list[str | Path] = [*paths]
    try:
        server = SimpleTiledServer(directory=directory, api_key=api_key,
                                   readable_storage=storage or None)
    except (TimeoutError, RuntimeError) as exc:
        where = Path(directory) / "error.log" if directory else "the server's error.log"
        raise TiledConnectionError(
            f"the embedded Tiled server did not start: {exc}. See {where}."
        ) from exc
    if server.port is None:  # read back from the URL it serves, which always names one
        server.close()
        raise TiledConnectionError(f"the embedded Tiled server at {server.uri} has no port")
    return LocalTiledServer(uri=server.uri.split("?", 1)[0], api_key=api_key,
                            directory=Path(server.directory), port=int(server.port),
                            mode="thread", closer=server.close)


def _start_process(directory: str | Path | None, api_key: str, paths: list[str],
                   startup_timeout: float) -> LocalTiledServer:
    temp = directory is None
    root = Path(tempfile.mkdtemp(prefix="tiled_")) if temp else Path(directory).resolve()
    server = TiledProcess(root, readable_storage=paths, api_key=api_key)
    try:
        server.start(startup_timeout)
    except TiledConnectionError:
        if temp:
            shutil.rmtree(root, ignore_errors=True)
        raise

    def close() -> None:
        server.close()
        if temp:
            shutil.rmtree(root, ignore_errors=True)

    return LocalTiledServer(uri=server.uri, api_key=api_key, directory=root, port=server.port,
                            mode="process", closer=close)
