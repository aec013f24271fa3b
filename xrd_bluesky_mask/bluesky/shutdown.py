"""Stopping a RunEngine cleanly, and closing things before the interpreter waits for threads.

A RunEngine runs its asyncio loop on a daemon thread for as long as the process lives;
`stop_run_engine` halts a plan still open, stops the loop, joins its thread and closes the
loop. `close_at_exit` runs a close function at interpreter exit early enough for a server on a
non-daemon thread. `Session` and the beamline profile close with them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bluesky import RunEngine

__all__ = ["close_at_exit", "stop_run_engine"]

log = logging.getLogger(__name__)


def stop_run_engine(RE: RunEngine, timeout: float = 5.0) -> bool:
    """Halt ``RE`` if a plan is open, stop its event loop and join the loop's thread.

    A RunEngine runs its asyncio loop on a daemon thread for as long as the process lives; a
    program (or test session) that makes several RunEngines should stop each one, or their
    loops and the ophyd-async tasks on them pile up. Once the thread has ended, the tasks still
    pending on the loop are cancelled and the loop is closed. Idempotent.

    Parameters
    ----------
    RE
        The RunEngine.
    timeout
        Seconds to wait for the loop thread to end, and again for pending tasks to cancel.

    Returns
    -------
    bool
        True if the loop thread has ended (False: still running after ``timeout`` s).
    """
    if RE.state not in ("idle", "panicked"):
        try:
            RE.halt()
        except Exception as exc:  # e.g. TransitionError: it went idle meanwhile
            log.debug("RunEngine halt: %s", exc)
    loop = RE.loop
    thread: threading.Thread | None = getattr(RE, "_th", None)  # bluesky has no public name
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)
    stopped = thread is None or not thread.is_alive()
    if stopped and not loop.is_closed() and not loop.is_running():
        _close_loop(loop, timeout)
    return stopped


def _close_loop(loop: asyncio.AbstractEventLoop, timeout: float) -> None:
    """Cancel what is still pending on a stopped loop, then close it (as `asyncio.run` does)."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception as exc:
        log.debug("closing the RunEngine's event loop: %s", exc)
    finally:
        loop.close()


def close_at_exit(close: Callable[[], object]) -> None:
    """Call ``close()`` when the interpreter exits, before it waits for non-daemon threads.

    The embedded Tiled server runs uvicorn on a non-daemon thread, and the interpreter joins
    those *before* `atexit` handlers run: with `atexit` alone, exiting IPython would hang.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(close)
    else:  # pragma: no cover (Python without threading._register_atexit)
        import atexit

        atexit.register(close)
