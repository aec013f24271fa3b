"""Real processes for the out-of-process worker tests: a Tiled server that can be killed and
restarted on the same port, a 0MQ proxy, ``xrd-mask worker``, and a deliberately slow masker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from xrd_bluesky_mask.masking.classical import RingOutlierMasker

REPO = Path(__file__).resolve().parents[2]


class SlowClassical(RingOutlierMasker):
    """The classical masker, 0.3 s slower per frame (a stand-in for a heavy model), so that a
    test can act while a run is half done. Same settings, same masks as ``classical``."""

    delay_s = 0.3

    def predict(self, frame: Any, geometry: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay_s)
        return super().predict(frame, geometry, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.1) -> Any:
    """Poll ``predicate()`` until truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


class TiledProcess:
    """``tiled serve catalog`` on a persistent directory and a fixed port (restartable)."""

    def __init__(self, directory: Path, readable: Path, api_key: str = "secret123") -> None:
        self.directory, self.readable, self.api_key = directory, readable, api_key
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self, timeout: float = 90.0) -> TiledProcess:
        d = self.directory
        (d / "data").mkdir(parents=True, exist_ok=True)
        db = d / "catalog.db"
        exe = Path(sys.executable).with_name("tiled")
        cmd = [str(exe), "serve", "catalog", str(db), *([] if db.exists() else ["--init"]),
               "-w", str(d / "data"), "-w", f"duckdb:///{d / 'storage.duckdb'}",
               "-r", str(self.readable), "--api-key", self.api_key,
               "--host", "127.0.0.1", "--port", str(self.port)]
        log = open(d / "server.log", "ab")  # noqa: SIM115 (the process owns it)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "tiled serve exited"
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1,
                                 trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "the Tiled server to answer", poll=0.2)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> Any:
        from xrd_bluesky_mask.tiled.server import connect

        return connect(self.uri, self.api_key)


class LoggedProcess:
    """A child process whose stdout and stderr go to a file that tests can read."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None, f"process exited:\n{self.output()[-3000:]}"
            return text in self.output()

        wait_for(seen, timeout, f"{text!r} in {self.log.name}", poll=0.1)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_proxy(in_port: int, out_port: int, log: Path) -> LoggedProcess:
    exe = Path(sys.executable).with_name("bluesky-0MQ-proxy")
    proxy = LoggedProcess([str(exe), "--in-address", f"127.0.0.1:{in_port}",
                           "--out-address", f"127.0.0.1:{out_port}"], log)
    proxy.wait_output("publishing to address", 60)
    return proxy


def start_worker(out_port: int, server: TiledProcess, log: Path, *extra: str) -> LoggedProcess:
    """``xrd-mask worker --zmq`` with the slow classical masker; returns once subscribed.

    The Tiled client's own retries are cut short (``TILED_RETRY_*``) so that an outage reaches
    the worker's retry layer within the test's time.
    """
    cmd = [sys.executable, "-m", "xrd_bluesky_mask.cli", "worker",
           "--zmq", f"127.0.0.1:{out_port}", "--tiled", server.uri, "--api-key", server.api_key,
           "--masker", "tests.bluesky.remote_helpers:SlowClassical", "--npt", "500", *extra]
    worker = LoggedProcess(cmd, log, env={"TILED_RETRY_ATTEMPTS": "2",
                                          "TILED_RETRY_TIMEOUT": "2"})
    worker.wait_output("xrd-mask worker: listening", 120)
    time.sleep(0.5)  # 0MQ slow joiner: let the subscription reach the proxy
    return worker
