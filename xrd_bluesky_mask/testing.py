"""Pytest plugin and helpers for testing live masking against a real Tiled server.

Register it once, in the root ``conftest.py``::

    pytest_plugins = ["xrd_bluesky_mask.testing"]

This project's tests do so, and a beamline repository can do the same to test its profile,
plans and detectors with the fixtures below. Needs pytest (the ``test`` extra); nothing in the
package imports this module.

Fixtures (all but `run_engine` and `make_det` built once per test session)
    ``live_base``
        The session's directory: ``raw/`` and ``tiled/``.
    ``raw_dir``
        Where simulated detectors write their HDF5 files (the server may read it).
    ``tiled_server``
        A writable Tiled server in this process that can read ``raw_dir``
        (`xrd_bluesky_mask.tiled.server.LocalTiledServer`: ``uri``, ``api_key``, ``client()``).
    ``tiled_client``
        A root client on it.
    ``session``
        A `Session` on that server: RunEngine with TiledWriter (``batch_size=1``) subscribed;
        live masking per scan with ``with session.masking(masker) as cb: ...``.
    ``run_engine``
        The session's RunEngine; fails the test that leaves it not idle or leaves a masking
        callback subscribed (and cleans up, so the next test starts clean).
    ``make_det``
        Factory of simulated detectors on the session's RunEngine (96 x 96 frames by default).

Helpers
    `serve_tiled` (the one way to start a Tiled server for a test, in this process or as a
    ``tiled serve`` child process), `TiledProcess`, `free_port`, `wait_for`, `FailingMasker`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .bluesky.session import Session
from .tiled.serve_process import TiledProcess, free_port

if TYPE_CHECKING:
    from .bluesky.devices import SimXRDDetector
    from .tiled.server import LocalTiledServer

__all__ = [
    "FailingMasker",
    "TiledProcess",
    "free_port",
    "live_base",
    "make_det",
    "raw_dir",
    "run_engine",
    "serve_tiled",
    "session",
    "tiled_client",
    "tiled_server",
    "wait_for",
]

T = TypeVar("T")


# -- helpers ----------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], timeout: float, what: str, poll: float = 0.05) -> T:
    """Call ``predicate()`` every ``poll`` s until it returns something truthy, and return that.

    The deterministic replacement for a ``time.sleep`` that guesses how long something takes:
    it waits exactly until the condition holds, and fails with ``what`` in the message after
    ``timeout`` s. An exception from ``predicate`` propagates (e.g. "the process exited").

    Raises
    ------
    AssertionError
        The condition did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def serve_tiled(directory: str | Path | None = None, *,
                readable_storage: Sequence[str | Path] = (), api_key: str | None = None,
                process: bool = False, config: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> LocalTiledServer | TiledProcess:
    """Start a writable Tiled server for a test: the one way this project's tests start one.

    In this process (the default): the embedded server
    (`xrd_bluesky_mask.tiled.server.start_local_server`, Tiled's SimpleTiledServer on a
    thread, 3-7 s), which is what a test that needs a real server and its socket wants. With
    ``process=True`` (implied by ``config``): a started `TiledProcess`, for tests where a
    separate process matters (killed and restarted mid-run, a config file with its own
    adapters). Either way the result has ``uri``, ``api_key``, ``client()`` and ``close()``
    and is a context manager.

    Parameters
    ----------
    directory
        Catalog and data; None: a temporary directory (in this process only; a child process
        needs a directory).
    readable_storage, api_key, config, env
        As for `TiledProcess` (``config`` and ``env`` need ``process=True``).
    """
    if config is not None or process:
        if directory is None:
            raise ValueError("serve_tiled(process=True) needs a directory for the catalog "
                             "and the server's log")
        server = TiledProcess(directory, readable_storage=readable_storage, api_key=api_key,
                              config=config, env=env)
        return server.start()
    if env:
        raise ValueError("serve_tiled: env= applies to a child process (process=True)")
    from .tiled.server import start_local_server

    return start_local_server(directory, api_key=api_key, readable_storage=readable_storage)


class FailingMasker:
    """A masker whose ``predict`` always raises ``RuntimeError("kaboom")``: masking errors
    must be recorded per frame and never abort the scan."""

    name = "failing"

    def predict(self, frame: Any, geometry: Any, **kwargs: Any) -> Any:
        """Raise."""
        raise RuntimeError("kaboom")

    def settings(self) -> dict[str, Any]:
        """What the results record."""
        return {"masker": self.name}


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def live_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's directory: ``raw/`` (detector files) and ``tiled/`` (the catalog)."""
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="session")
def raw_dir(live_base: Path) -> Path:
    """Where simulated detectors write their HDF5 files (readable by ``tiled_server``)."""
    path = live_base / "raw"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiled_server(live_base: Path, raw_dir: Path) -> Iterator[LocalTiledServer]:
    """A writable Tiled server in this process that can read ``raw_dir``."""
    from .tiled.server import LocalTiledServer

    server = serve_tiled(live_base / "tiled", readable_storage=[raw_dir])
    assert isinstance(server, LocalTiledServer)
    with server:
        yield server


@pytest.fixture(scope="session")
def tiled_client(tiled_server: LocalTiledServer) -> Any:
    """A root client on ``tiled_server``."""
    return tiled_server.client()


@pytest.fixture(scope="session")
def session(tiled_server: LocalTiledServer, raw_dir: Path) -> Iterator[Session]:
    """A `Session` on ``tiled_server``: RunEngine with TiledWriter subscribed, detectors
    writing to ``raw_dir``. Closed (RunEngine halted, loop thread joined) at the end."""
    with Session(tiled_server.client(), readable_storage=[raw_dir]) as s:
        yield s


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so that `run_engine` knows at teardown
    whether the test itself failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, Any]]()


@pytest.fixture
def run_engine(session: Session, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's RunEngine (TiledWriter subscribed: every run lands in ``tiled_server``).

    After the test it must be idle with no masking callback left subscribed; otherwise it is
    halted and the callback stopped (so later tests start clean), and a test that passed
    fails (one that failed already keeps its own error).
    """
    RE = session.RE
    yield RE
    problems = []
    if RE.state != "idle":
        problems.append(f"RunEngine left {RE.state!r}")
        with contextlib.suppress(Exception):  # e.g. it went idle meanwhile
            RE.halt()
    if session.callback is not None:
        problems.append("masking callback left subscribed (use `with session.masking(...)`)")
        session.stop_masking(timeout=30)
    call = request.node.stash.get(_REPORTS, {}).get("call")
    if problems and not (call is not None and call.failed):
        pytest.fail("; ".join(problems))


@pytest.fixture
def make_det(session: Session) -> Callable[..., SimXRDDetector]:
    """Factory: a connected `SimXRDDetector` on the session's RunEngine, files in ``raw_dir``
    (96 x 96 frames and name ``det`` unless given; other keywords: `make_detector`'s)."""

    def make(**kwargs: Any) -> SimXRDDetector:
        kwargs.setdefault("shape", (96, 96))
        kwargs.setdefault("name", "det")
        return session.add_detector(**kwargs)

    return make
