"""Fixtures shared by tests/tiled and tests/bluesky: one in-process Tiled server and one
RunEngine for the whole session.

Both conftest files import these fixtures; the server and RunEngine are process-wide singletons
(reference counted), so the two folders share them instead of starting two of each.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

_lock = threading.Lock()
_shared: dict[str, Any] = {}
_users: dict[str, int] = {}


def _acquire(name: str, make: Any) -> Any:
    with _lock:
        if name not in _shared:
            _shared[name] = make()
        _users[name] = _users.get(name, 0) + 1
        return _shared[name]


def _release(name: str, close: Any) -> None:
    with _lock:
        _users[name] -= 1
        if _users[name] == 0:
            close(_shared.pop(name))


@pytest.fixture(scope="session")
def live_base(tmp_path_factory) -> Path:
    """Session directory: ``raw/`` (detector HDF5 files, readable by the server), ``tiled/``."""
    return _acquire("base", lambda: tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="session")
def raw_dir(live_base: Path) -> Path:
    """Where simulated detectors write their HDF5 files."""
    path = live_base / "raw"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiled_server(live_base: Path, raw_dir: Path):
    """A writable in-process Tiled server that can read ``raw_dir``."""
    from xrd_bluesky_mask.tiled.server import start_local_server

    server = _acquire("server", lambda: start_local_server(live_base / "tiled",
                                                           readable_storage=[raw_dir]))
    yield server
    _release("server", lambda s: s.close())


@pytest.fixture(scope="session")
def tiled_client(tiled_server):
    """A root client on the session server."""
    return tiled_server.client()


def _stop_run_engine(RE: Any) -> None:
    if RE.state not in ("idle", "panicked"):
        RE.halt()
    RE.loop.call_soon_threadsafe(RE.loop.stop)
    RE._th.join(timeout=5)


@pytest.fixture(scope="session")
def run_engine():
    """A RunEngine (``call_returns_result=True``), halted and its loop stopped at the end."""
    from bluesky import RunEngine

    RE = _acquire("RE", lambda: RunEngine(call_returns_result=True))
    yield RE
    _release("RE", _stop_run_engine)


@pytest.fixture
def make_det(run_engine, raw_dir):
    """Factory: a connected `SimXRDDetector` on the session RunEngine (small frames)."""
    from xrd_bluesky_mask.bluesky.devices import make_detector

    def make(**kwargs: Any):
        kwargs.setdefault("shape", (96, 96))
        kwargs.setdefault("name", "det")
        return make_detector(raw_dir, run_engine=run_engine, **kwargs)

    return make


class Exploding:
    """A masker whose predict always raises."""

    name = "exploding"

    def predict(self, frame, geometry):
        raise RuntimeError("kaboom")

    def settings(self):
        return {"masker": self.name}
