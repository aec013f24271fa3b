"""The embedded Tiled server, and connecting to any Tiled server with clear errors.

`start_local_server` runs a writable Tiled server (SQLite catalog, zarr/DuckDB storage in a
given or temporary directory) on 127.0.0.1 and a free port: in this process (it wraps
`tiled.server.SimpleTiledServer`) or as a ``tiled serve catalog`` child process
(`TiledProcess`, the one ``tiled serve`` launcher, which the tests also use). `connect`
opens a client on any server by URI and API key and turns the usual failures into
`TiledConnectionError` / `TiledAuthError` quickly: it probes ``/healthz`` with a short timeout
first, instead of sitting through the Tiled client's ~24 s of retries.

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

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import TiledAuthError, TiledConnectionError

__all__ = ["API_KEY_FILE", "LocalTiledServer", "connect", "in_process_api_key", "kept_api_key",
           "probe", "start_local_server", "tiled_errors"]

log = logging.getLogger(__name__)


#: The file in an embedded server's catalog folder that keeps its API key across sessions.
API_KEY_FILE = "api_key"


def kept_api_key(directory: str | Path, *, create: bool = True) -> str | None:
    """The API key kept with the catalog in ``directory``, made on first use.

    The beamline profile's embedded server and ``xrd-mask serve`` use it, so that the
    ``export TILED_API_KEY=...`` line and the commands printed once keep working in later
    sessions. The key is ``directory/api_key`` (`API_KEY_FILE`): 32 random hex digits, created
    readable and writable by its owner only (mode 0600); a kept file that others can read is
    made private again, with a warning.

    Parameters
    ----------
    directory
        The catalog folder (created if missing when a key is made).
    create
        Make (and keep) a new key when there is none; False returns None instead.

    Returns
    -------
    str or None
        The key; None when there is none and ``create`` is False.

    Raises
    ------
    ValueError
        The kept file holds no valid key (empty, or characters Tiled refuses).
    """
    path = Path(directory) / API_KEY_FILE
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(16)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another process: use that one
            return kept_api_key(directory, create=False)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        log.info("new API key kept in %s", path)
        return key
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o600)
        log.warning("%s was readable by others (mode %o); it is now private (0600)", path, mode)
    try:
        return _check_api_key(path.read_text().strip())
    except ValueError as exc:
        raise ValueError(f"{path} holds no valid API key ({exc}); delete the file to make a "
                         "new key") from None


def in_process_api_key() -> str | None:
    """The key of the embedded server running on a thread of this process, if any: Tiled keeps
    one key per process, so another thread server started here must share it."""
    running = next(iter(_IN_PROCESS), None)
    return running.api_key if running is not None else None


def _check_api_key(api_key: str) -> str:
    if not api_key or not api_key.isascii() or not api_key.isalnum():
        raise ValueError(
            f"the API key must be non-empty and alphanumeric (letters and digits only), got "
            f"{api_key!r}: Tiled refuses to start with other characters. Use e.g. "
            "secrets.token_hex(16)."
        )
    return api_key


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
        api_key = _check_api_key(api_key)
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound once, then released).

    Another process may take it before it is used; good enough for a server started right
    after, and how a test gets a port that is certain to refuse connections.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class TiledProcess:
    """A ``tiled serve`` child process on 127.0.0.1: killable and restartable on the same port
    and catalog: the one ``tiled serve`` launcher (`start_local_server` with
    ``mode="process"``, and the tests' `xrd_bluesky_mask.testing.serve_tiled`).

    Parameters
    ----------
    directory
        Catalog (``catalog.db``, created on the first start), data (``data/``, DuckDB) and the
        server's log (``server.log``, appended to by every start).
    readable_storage
        Directories of external files the server may read.
    api_key
        Alphanumeric key; None: a random one.
    config
        Serve this config file (``tiled serve config``) instead of a catalog in ``directory``;
        the file decides storage, adapters and streaming (``streaming_cache: {uri: memory}``
        for subscriptions; ``env`` can fill its ``${VARIABLES}``). A catalog in ``directory``
        is served with the in-memory streaming cache (`catalog_config`).
    env
        Extra environment variables for the server.
    """

    def __init__(self, directory: str | Path, *, readable_storage: Sequence[str | Path] = (),
                 api_key: str | None = None, config: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.directory = Path(directory)
        self.readable_storage = [Path(p).resolve() for p in readable_storage]
        self.api_key = api_key or secrets.token_hex(8)
        self.config = Path(config) if config is not None else None
        self.env = dict(env or {})
        self.port = free_port()
        self.log = self.directory / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """``http://127.0.0.1:PORT/api/v1`` (no key)."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def uri_with_key(self) -> str:
        """``uri`` with ``?api_key=...``."""
        return f"{self.uri}?api_key={self.api_key}"

    def command(self) -> list[str]:
        """The ``tiled serve ...`` command line."""
        exe = Path(sys.executable).with_name("tiled")
        tiled = str(exe) if exe.exists() else shutil.which("tiled") or "tiled"
        common = ["--api-key", self.api_key, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.config is not None:
            return [tiled, "serve", "config", str(self.config), *common]
        return [tiled, "serve", "config", str(self.catalog_config()), *common]

    def catalog_config(self) -> Path:
        """Write and return ``directory/serve.json``: the ``tiled serve config`` file of a
        writable catalog in ``directory`` with the in-memory streaming cache.

        The cache is what websocket subscriptions (``xrd-mask watch``) need; one server
        process, so memory rather than Redis. A config file rather than ``tiled serve catalog
        --cache memory``: with tiled 0.2.20 that option fails for any catalog but ``--temp``
        (``StreamingCacheConfig`` is imported in the ``--temp`` branch only).
        """
        config = {
            "trees": [{"path": "/", "tree": "catalog", "args": {
                "uri": f"sqlite:///{self.directory.resolve() / 'catalog.db'}",
                "writable_storage": [str(self.directory.resolve() / "data"),
                                     f"duckdb:///{self.directory.resolve() / 'storage.duckdb'}"],
                "readable_storage": [str(p) for p in self.readable_storage],
                "init_if_not_exists": True}}],
            "streaming_cache": {"uri": "memory"},
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "serve.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 90.0) -> TiledProcess:
        """Start the server and return once it answers ``/healthz`` (5-15 s on 2 cores).

        Raises
        ------
        TiledConnectionError
            It exited, or did not answer within ``timeout`` s (the message ends with its log).
        """
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:  # the child keeps its own handle
            self.proc = proc = subprocess.Popen(self.command(), stdout=log,
                                                stderr=subprocess.STDOUT,
                                                env={**os.environ, **self.env})

        deadline = time.monotonic() + timeout
        while True:
            problem = None
            if proc.poll() is not None:
                problem = f"`tiled serve` exited with code {proc.returncode}"
            else:
                try:
                    probe(self.uri, timeout=1.0)
                    return self
                except TiledConnectionError:
                    if time.monotonic() > deadline:
                        problem = (f"`tiled serve` did not answer at {self.uri} within "
                                   f"{timeout:g} s")
            if problem is not None:
                self.close()
                raise TiledConnectionError(f"{problem}; its log ({self.log}) ends:\n"
                                           f"{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no clean shutdown (a crash or an outage)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def close(self) -> None:
        """Stop it (SIGINT, then SIGKILL after 15 s); idempotent. The directory is kept."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> Any:
        """A new root client (`connect`)."""
        return connect(self.uri, self.api_key)

    def __enter__(self) -> TiledProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_key(uri: str) -> tuple[str, str | None]:
    """``uri`` without an ``api_key`` query parameter, and that key (or None)."""
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    key = query.pop("api_key", [None])[0]
    rest = urlencode(query, doseq=True)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), key


def _healthz_url(uri: str) -> str:
    parts = urlsplit(uri)
    path = parts.path.rstrip("/")
    prefix = path.split("/api", 1)[0] if "/api" in path else path
    return urlunsplit((parts.scheme, parts.netloc, prefix + "/healthz", "", ""))


def probe(uri: str, timeout: float = 3.0) -> None:
    """Check within ``timeout`` seconds that a Tiled server answers at ``uri``.

    Raises
    ------
    TiledConnectionError
        Nothing listens there, or it is not a Tiled server (no ``/healthz``).
    """
    import httpx

    url = _healthz_url(uri)
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise TiledConnectionError(
            f"no Tiled server answers at {uri} ({type(exc).__name__}: {exc}; probed {url} for "
            f"{timeout:g} s). Start one (`tiled serve catalog --temp --api-key KEY`, or let "
            "`xrd-mask demo` start the embedded server) or fix the URI."
        ) from None
    if response.status_code != 200:
        raise TiledConnectionError(
            f"{url} answered HTTP {response.status_code}, not 200: is {uri} a Tiled server? "
            "Pass the server's base URI, e.g. http://HOST:8000/api/v1."
        )


@contextlib.contextmanager
def tiled_errors(uri: str, action: str) -> Iterator[None]:
    """Turn Tiled's authentication failures during ``action`` into `TiledAuthError`."""
    from tiled.client.utils import ClientError

    try:
        yield
    except ClientError as exc:
        status = exc.response.status_code
        if status in (401, 403):
            detail = str(exc).splitlines()[0]
            raise TiledAuthError(
                f"the Tiled server at {uri} refused the API key while trying to {action} "
                f"(HTTP {status}: {detail}). Pass a valid key with write scope (api_key=... or "
                "the TILED_API_KEY environment variable)."
            ) from None
        raise
    except RuntimeError as exc:
        if "API key" in str(exc) or "api_key" in str(exc):
            raise TiledAuthError(
                f"the Tiled server at {uri} requires an API key and none was given. Pass "
                "api_key=... or set TILED_API_KEY."
            ) from None
        raise


def connect(uri: str, api_key: str | None = None, *, timeout: float = 3.0) -> Any:
    """A `tiled.client` root container on the server at ``uri``, failing fast and clearly.

    Parameters
    ----------
    uri
        Server URI, e.g. ``http://127.0.0.1:8000/api/v1`` (an ``?api_key=`` in it is used when
        ``api_key`` is None).
    api_key
        API key; None: the key in ``uri``, else the ``TILED_API_KEY`` environment variable.
    timeout
        Seconds to wait for the ``/healthz`` probe.

    Raises
    ------
    TiledConnectionError
        Nothing answers at ``uri`` within ``timeout`` seconds.
    TiledAuthError
        The server refused the key (HTTP 401), or needs one and none was given.
    """
    from tiled.client import from_uri

    base, key_in_uri = _split_key(uri)
    key = api_key or key_in_uri or os.environ.get("TILED_API_KEY") or None
    probe(base, timeout)
    with tiled_errors(base, "connect"):
        return from_uri(base, api_key=key)
