"""The embedded Tiled server, and connecting to any Tiled server with clear errors.

`start_local_server` runs a writable Tiled server (SQLite catalog, zarr/DuckDB storage in a
given or temporary directory) on 127.0.0.1 and a free port: in this process (it wraps
`tiled.server.SimpleTiledServer`) or as a ``tiled serve catalog`` child process. `connect`
opens a client on any server by URI and API key and turns the usual failures into
`TiledConnectionError` / `TiledAuthError` quickly: it probes ``/healthz`` with a short timeout
first, instead of sitting through the Tiled client's ~24 s of retries.

Example
-------
>>> with start_local_server(readable_storage=["/data/raw"]) as server:  # doctest: +SKIP
...     client = server.client()
...     print(server.uri, server.api_key)
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import TiledAuthError, TiledConnectionError

__all__ = ["LocalTiledServer", "connect", "probe", "start_local_server", "tiled_errors"]

log = logging.getLogger(__name__)


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
    (root / "data").mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("tiled")
    tiled_cmd = [str(exe)] if exe.exists() else [shutil.which("tiled") or "tiled"]
    db = root / "catalog.db"
    port = free_port()
    cmd = [*tiled_cmd, "serve", "catalog", str(db), *([] if db.exists() else ["--init"]),
           "-w", str(root / "data"), "-w", f"duckdb:///{root / 'storage.duckdb'}",
           "--api-key", api_key, "--host", "127.0.0.1", "--port", str(port)]
    for p in paths:
        cmd += ["-r", p]
    logfile = open(root / "server.log", "ab")  # noqa: SIM115 (closed by the closer)
    proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}/api/v1"

    def close() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logfile.close()
        if temp:
            shutil.rmtree(root, ignore_errors=True)

    deadline = time.monotonic() + startup_timeout
    while True:
        if proc.poll() is not None:
            close()
            raise TiledConnectionError(
                f"`tiled serve catalog` exited with code {proc.returncode} before answering; "
                f"see {root / 'server.log'}."
            )
        try:
            probe(uri, timeout=1.0)
            break
        except TiledConnectionError:
            if time.monotonic() > deadline:
                close()
                raise TiledConnectionError(
                    f"`tiled serve catalog` did not answer at {uri} within "
                    f"{startup_timeout:g} s; see {root / 'server.log'}."
                ) from None
            time.sleep(0.2)
    return LocalTiledServer(uri=uri, api_key=api_key, directory=root, port=port,
                            mode="process", closer=close)


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
