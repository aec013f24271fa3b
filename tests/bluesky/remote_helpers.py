"""Real processes for the out-of-process worker tests: a 0MQ proxy, ``xrd-mask worker``, a masker
the test holds between frames, and a probe that shows the 0MQ path is up. (The Tiled server
process comes from `xrd_bluesky_mask.testing.serve_tiled`.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.testing import TiledProcess, wait_for

REPO = Path(__file__).resolve().parents[2]

#: Environment variable naming the folder of `GatedClassical`'s gate (set for the worker).
GATE_ENV = "XRD_TEST_GATE"


class Gate:
    """Files in a folder that decide how many frames `GatedClassical` may mask.

    While ``closed`` exists, each frame first takes a permit (deletes one ``permit-*`` file)
    and waits while there is none; ``open`` lets every frame through. Files, because the
    masker runs in another process.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def close(self, permits: int) -> None:
        """From now on only ``permits`` more frames are masked."""
        for old in self.folder.glob("permit-*"):
            old.unlink(missing_ok=True)
        for k in range(permits):
            (self.folder / f"permit-{k:04d}").touch()
        (self.folder / "closed").touch()

    def open(self) -> None:
        """Every frame goes through."""
        (self.folder / "closed").unlink(missing_ok=True)


class GatedClassical(RingOutlierMasker):
    """The classical masker (same settings, same masks as ``classical``) that a test can hold
    between frames through the `Gate` in ``$XRD_TEST_GATE``: the test decides exactly how far
    a run gets before it kills the worker or the server, instead of racing a slow masker."""

    def predict(self, frame: Any, geometry: Any, **kwargs: Any) -> Any:
        """Wait for the gate, then mask as ``classical`` does."""
        _pass_gate()
        return super().predict(frame, geometry, **kwargs)


def _pass_gate(timeout: float = 300.0) -> None:
    folder = os.environ.get(GATE_ENV)
    if not folder:
        return
    gate = Path(folder)
    deadline = time.monotonic() + timeout
    while (gate / "closed").exists():
        for permit in sorted(gate.glob("permit-*")):
            try:
                permit.unlink()
            except FileNotFoundError:
                continue
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate in {gate} stayed closed for {timeout:g} s")
        time.sleep(0.02)


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
        """Return once ``text`` is in the output; fail if the process exits first."""
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


def start_worker(out_port: int, server: TiledProcess, log: Path, publisher: Any,
                 gate: Gate) -> LoggedProcess:
    """``xrd-mask worker --zmq`` with the gated classical masker; returns once documents that
    ``publisher`` sends reach it.

    The Tiled client's own retries are cut short (``TILED_RETRY_*``) so that an outage reaches
    the worker's retry layer within the test's time.
    """
    cmd = [sys.executable, "-m", "xrd_bluesky_mask.cli", "worker",
           "--zmq", f"127.0.0.1:{out_port}", "--tiled", server.uri, "--api-key", server.api_key,
           "--masker", "tests.bluesky.remote_helpers:GatedClassical", "--npt", "500"]
    worker = LoggedProcess(cmd, log, env={"TILED_RETRY_ATTEMPTS": "2",
                                          "TILED_RETRY_TIMEOUT": "2",
                                          GATE_ENV: str(gate.folder)})
    worker.wait_output("xrd-mask worker: listening", 120)
    wait_until_delivered(publisher, worker)
    return worker


def wait_until_delivered(publisher: Any, worker: LoggedProcess, timeout: float = 60.0) -> None:
    """Publish tiny probe runs until the worker logs one of them.

    0MQ drops what a publisher sends before the subscriber's subscription has reached the
    proxy (the "slow joiner"); a fixed sleep only guesses how long that takes. A probe run has
    a 4 x 4 image key and no geometry, so the worker records it as failed ("no detector
    geometry") under its own uid and logs "xrd-mask: run <uid> ...": nothing else is touched.
    """
    from event_model import compose_run

    sent: list[str] = []

    def delivered() -> bool:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.output()[-3000:]}"
        out = worker.output()
        if any(f"run {uid}" in out for uid in sent):
            return True
        run = compose_run(metadata={"purpose": "0MQ probe"})
        desc = run.compose_descriptor(name="primary", data_keys={"det": {
            "shape": [1, 4, 4], "dtype": "array", "dtype_numpy": "<f4", "source": "probe",
            "external": "STREAM:"}})
        for name, doc in (("start", run.start_doc), ("descriptor", desc.descriptor_doc),
                          ("stop", run.compose_stop())):
            publisher(name, doc)
        sent.append(run.start_doc["uid"])
        return False

    wait_for(delivered, timeout, "a probe run to reach the worker through the 0MQ proxy",
             poll=0.5)
