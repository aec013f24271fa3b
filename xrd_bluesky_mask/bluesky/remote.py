"""The masking callback as its own service, fed with documents over 0MQ or Kafka.

The beamline session publishes its documents (``RE.subscribe(Publisher("host:5577"))`` to a
``bluesky-0MQ-proxy``, or bluesky-kafka's Publisher) instead of processing them in-process;
``xrd-mask worker`` subscribes and runs the same `XRDMaskCallback` there, reading frames from and
writing results to Tiled. The raw data must reach Tiled through TiledWriter (``batch_size=1``)
before the documents reach the worker: subscribe the Publisher *after* TiledWriter.

Outages: frame reads go through `RetryingSource`, which waits for an unreachable Tiled server
with back-off (``retry_for`` seconds per read); results go through the same local journal as
the in-process callback (`xrd_bluesky_mask.sinks.journal`): kept on disk, written with
back-off as soon as Tiled answers, however long it is away. A worker killed with results in its
journal writes them when it starts again on the same journal folder (``--journal``); runs it
was in the middle of are then closed ``interrupted``, and ``xrd-mask reprocess UID`` with the
same settings completes them.

Documents that arrive while the worker is down are not replayed by 0MQ; Kafka consumer groups
resume from their last committed offset. Either way ``reprocess`` fills any gap.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigError, MissingExtra

__all__ = ["kafka_dispatcher", "make_callback", "serve", "zmq_dispatcher"]

log = logging.getLogger(__name__)


def zmq_dispatcher(address: str, *, prefix: bytes = b"") -> Any:
    """A `bluesky.callbacks.zmq.RemoteDispatcher` on a 0MQ proxy's output ``HOST:PORT``."""
    from bluesky.callbacks.zmq import RemoteDispatcher

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--zmq wants HOST:PORT (the proxy's --out-address), got {address!r}")
    return RemoteDispatcher(f"{host}:{port}", prefix=prefix)


def kafka_dispatcher(bootstrap: str, topics: Iterable[str], *, group_id: str = "xrd-mask",
                     consumer_config: dict[str, Any] | None = None) -> Any:
    """A `bluesky_kafka.RemoteDispatcher` on ``topics`` of the Kafka cluster ``bootstrap``.

    New consumer groups start at the latest message (``auto.offset.reset: latest``); pass
    ``consumer_config`` to change that.

    Raises
    ------
    MissingExtra
        bluesky-kafka is not installed.
    """
    try:
        from bluesky_kafka import RemoteDispatcher  # pyright: ignore[reportMissingImports]  # optional [kafka] extra
    except ImportError as exc:
        raise MissingExtra(
            f"--kafka needs bluesky-kafka, which is not installed ({exc}): pip install "
            "bluesky-kafka (or pip install 'xrd-bluesky-mask[kafka]'), or use --zmq."
        ) from None
    topics = [t for t in topics if t]
    if not topics:
        raise ConfigError("--kafka needs at least one --topic")
    return RemoteDispatcher(topics=topics, bootstrap_servers=bootstrap, group_id=group_id,
                            consumer_config={"auto.offset.reset": "latest",
                                             **(consumer_config or {})})


def make_callback(client: Any, *, runs: Any = None, masker: Any = None, poni: Any = None,
                  integration: Any = None, root: str = "derived/xrd_mask",
                  quiet_s: float = 0.0, frame_timeout: float = 30.0,
                  retry_for: float = 600.0, journal: Any = None,
                  journal_max_bytes: int | None = None, if_misoriented: str = "refuse",
                  dask: Any = None, workers: int | None = None) -> Any:
    """The `XRDMaskCallback` of a worker service: Tiled reads and writes that ride out outages.

    ``client`` is any node on the server (results go under ``root`` from its root); ``runs`` is
    the container TiledWriter writes the runs to (default: ``client``). ``journal``: the
    results journal's folder (None: the one the in-process callback uses for this server and
    root, so either replays what the other left). ``if_misoriented``: see `Worker`. ``dask``
    (a scheduler address) or ``workers`` (a local cluster of N processes): frames masked on a
    Dask cluster, results written by this worker in frame order (`XRDMaskCallback`'s ``dask``,
    ``workers``).
    """
    from ..sinks.journal import DEFAULT_MAX_BYTES, default_journal_dir, journal_name
    from ..sinks.tiled import TiledResultSink
    from ..tiled.frames import TiledFrameSource
    from ..tiled.retry import RetryingSource
    from .callback import XRDMaskCallback

    source = RetryingSource(TiledFrameSource(runs if runs is not None else client,
                                             timeout=frame_timeout), give_up_after=retry_for)
    sink = TiledResultSink(client, root=root)
    if journal is None:
        journal = default_journal_dir() / journal_name(sink.uri, root.strip("/"))
    return XRDMaskCallback(source=source, sink=sink, masker=masker, poni=poni,
                           integration=integration, quiet_s=quiet_s, niceness=0,
                           journal=journal,
                           journal_max_bytes=journal_max_bytes or DEFAULT_MAX_BYTES,
                           if_misoriented=if_misoriented, dask=dask, workers=workers)


def serve(dispatcher: Any, callback: Callable[[str, dict], Any], *,
          drain_timeout: float = 600.0, on_ready: Callable[[], Any] | None = None) -> int:
    """Feed ``dispatcher``'s documents to ``callback`` until SIGINT/SIGTERM, then finish the
    queued frames (up to ``drain_timeout`` s). Returns 0, or 1 if work was left unfinished."""
    stop = threading.Event()

    def _interrupt(signum: int, frame: Any) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _interrupt)
    dispatcher.subscribe(callback)
    try:
        if hasattr(dispatcher, "loop") and on_ready is not None:  # 0MQ: after connecting
            dispatcher.loop.call_soon(on_ready)
            dispatcher.start()
        elif on_ready is not None:  # Kafka
            on_ready()
            dispatcher.start(continue_polling=lambda: not stop.is_set())
        else:
            dispatcher.start()
    except KeyboardInterrupt:
        log.info("xrd-mask worker: stopping; finishing queued frames")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    close = getattr(callback, "close", None)
    finished = close(timeout=drain_timeout) if close is not None else True
    return 0 if finished else 1
