"""`TiledProcess`: a ``tiled serve`` child process on 127.0.0.1, the one ``tiled serve`` launcher.

`xrd_bluesky_mask.tiled.server.start_local_server` (``mode="process"``) and the tests'
`xrd_bluesky_mask.testing.serve_tiled` start servers with it. It serves a writable catalog
through a config file that turns tiled's in-memory streaming cache on
(`TiledProcess.catalog_config`), so websocket subscribers (``xrd-mask watch``) get updates.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import TiledConnectionError
from .connect import connect, probe

__all__ = ["TiledProcess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound once, then released).

    Another process may take it before it is used; good enough for a server started right
    after, and how a test gets a port that is certain to refuse connections.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
