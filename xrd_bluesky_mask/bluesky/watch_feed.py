"""What `TiledRunWatcher` hears from Tiled: its push notifications and its health, as events.

`RunFeed` holds the watcher's subscriptions (`bluesky_tiled_plugins.subscribe_to_streams` on
every new run's stream arrays, and the container's own metadata updates) and a thread probing
the server every ``health_s`` seconds. Their threads only put events on one queue (`events`),
which the watcher's own thread drains: `Started` (a new run is announced, with its start
document: its geometry can be warmed before its first frame), `Grew` (an array holds more
frames), `MetadataChanged`
(a run's metadata, with ``stop`` once the scan ended), `Reconnected` (the server answers again
after an outage: subscribe afresh and catch up).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["Event", "Grew", "MetadataChanged", "Reconnected", "RunFeed", "Started"]

log = logging.getLogger(__name__)

#: Runs whose start document is older than the watcher by more than this (s) are not followed
#: by subscription when the server replays its cache; catch-up covers them.
_REPLAY_SLACK_S = 300.0


@dataclass(frozen=True)
class Started:
    """Run ``uid`` was announced, with its start document ``start``."""

    uid: str
    start: dict[str, Any]


@dataclass(frozen=True)
class Grew:
    """A stream's array of run ``uid`` now holds ``rows`` frames (``keys``: its data key)."""

    uid: str
    stream: str
    keys: tuple[str, ...]
    rows: int


@dataclass(frozen=True)
class MetadataChanged:
    """Run ``uid``'s metadata is now ``metadata`` (with ``stop`` once the scan ended)."""

    uid: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Reconnected:
    """The server answers again after an outage."""


Event: TypeAlias = "Started | Grew | MetadataChanged | Reconnected"


class RunFeed:
    """The subscriptions and the health probe of a watcher (module docstring).

    Parameters
    ----------
    runs
        The container followed (a tiled client node).
    stream
        The stream whose arrays are followed.
    wanted
        Whether run uid is still to be followed (not finished by the watcher).
    health_s
        Seconds between probes of the server.
    max_size
        Largest websocket message, bytes.
    report
        Called with a line when the server stops answering.
    """

    def __init__(self, runs: Any, *, stream: str, wanted: Callable[[str], bool],
                 health_s: float, max_size: int, report: Callable[[str], None]) -> None:
        self.runs, self.stream, self.wanted = runs, stream, wanted
        self.uri = str(runs.context.api_uri)
        self.health_s, self.max_size, self.report = health_s, max_size, report
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.subscriptions: list[Any] = []
        self._stop = threading.Event()
        self._health: threading.Thread | None = None
        self._t_started = time.time()

    # -- subscriptions (their threads only enqueue) ---------------------------------------
    def _on_data(self, update: Any) -> None:
        shape = getattr(update.update, "shape", None)
        if shape:
            self.events.put(Grew(update.run_uid, update.stream_name,
                                 tuple(update.data_keys), int(shape[0])))

    def _on_metadata(self, update: Any) -> None:
        self.events.put(MetadataChanged(update.key, dict(update.metadata or {})))

    def _follows(self, update: Any) -> bool:
        """Subscribe to a run that the server announces (also replayed from its cache)?"""
        start = (update.metadata or {}).get("start") or {}
        recent = float(start.get("time") or 0.0) >= self._t_started - _REPLAY_SLACK_S
        follow = recent and self.wanted(update.key)
        if follow:
            self.events.put(Started(update.key, dict(start)))
        return follow

    def subscribe(self) -> None:
        """(Re)open the subscriptions: the container's updates, and every new run's arrays.

        Raises
        ------
        TiledConnectionError
            The server cannot stream updates (no streaming cache) or does not answer.
        """
        from bluesky_tiled_plugins import subscribe_to_streams

        from ..tiled.streaming import check_streaming

        self.unsubscribe()
        check_streaming(self.runs)
        container = self.runs.subscribe()
        container.child_metadata_updated.add_callback(self._on_metadata)  # held weakly
        container.start_in_thread(None, max_size=self.max_size)
        self.subscriptions.append(container)
        self.subscriptions.append(subscribe_to_streams(
            self.runs, self._on_data, streams={self.stream: None}, start=0,
            max_size=self.max_size, run_filter=self._follows))

    def unsubscribe(self) -> None:
        """Close the subscriptions (in the background: a dead server's sockets take a while)."""
        old, self.subscriptions = self.subscriptions, []
        for sub in old:
            threading.Thread(target=_disconnect, args=(sub,), daemon=True,
                             name="xrd-mask-watch-unsubscribe").start()

    # -- the server's health --------------------------------------------------------------
    def start_probing(self) -> None:
        """Probe the server every ``health_s`` s on a thread of its own."""
        self._health = threading.Thread(target=self._probe_loop, daemon=True,
                                        name="xrd-mask-watch-health")
        self._health.start()

    def _probe_loop(self) -> None:
        from ..errors import TiledConnectionError
        from ..tiled.connect import probe

        up = True
        while not self._stop.wait(self.health_s):
            try:
                probe(self.uri, timeout=max(self.health_s, 1.0))
            except TiledConnectionError:
                if up:
                    self.report(f"Tiled at {self.uri} does not answer; frames queued so far "
                                "are masked meanwhile, results wait in the journal")
                up = False
                continue
            if not up:
                self.events.put(Reconnected())
            up = True

    def close(self) -> None:
        """Stop probing and close the subscriptions (waiting for each)."""
        self._stop.set()
        old, self.subscriptions = self.subscriptions, []
        for sub in old:
            _disconnect(sub)


def _disconnect(subscription: Any) -> None:
    try:
        subscription.disconnect()
    except Exception as exc:  # a dead server's socket
        log.debug("xrd-mask watch: closing a subscription: %s", exc)
