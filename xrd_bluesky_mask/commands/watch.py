"""``xrd-mask watch``: mask each new run of a Tiled container, triggered by Tiled alone."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any

from ._options import (
    add_integration,
    add_masker,
    add_service,
    add_tiled,
    connect_from_args,
    integration_from_args,
    masker_from_options,
    service_from_args,
)

ORDER = 6


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "watch", help="mask every new run of a Tiled container, triggered by Tiled itself",
        description="Subscribe to a container on a Tiled server (its streaming cache must be "
                    "on: `tiled serve catalog ... --cache memory`, or streaming_cache in its "
                    "config) and mask each new run's frames as TiledWriter registers them: no "
                    "RunEngine, 0MQ or Kafka needed. On start and whenever the server answers "
                    "again after an outage, runs without a finished result are caught up "
                    "with. Stop with Ctrl-C or SIGTERM: queued frames are finished first.")
    add_tiled(p)
    p.add_argument("--stream", default="primary",
                   help="stream holding the frames (primary)")
    p.add_argument("--since", type=float, default=None, metavar="HOURS",
                   help="catch up only with runs started in the last HOURS (default: every "
                        "run of the container without a finished result)")
    add_service(p, waits_for="frame")
    add_masker(p)
    add_integration(p)
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..bluesky.watch import TiledRunWatcher

    service = service_from_args(args)
    integration = integration_from_args(args)
    _, runs = connect_from_args(args)
    masker = masker_from_options(args)
    if not args.verbose:
        logging.getLogger("xrd_bluesky_mask").setLevel(logging.INFO)
        logging.getLogger("xrd_bluesky_mask.azimuthal").setLevel(logging.WARNING)
        logging.getLogger("xrd_bluesky_mask.pipeline.worker").setLevel(logging.WARNING)

    def say(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    since = None if args.since is None else time.time() - 3600.0 * args.since
    watcher = TiledRunWatcher(runs, masker=masker, integration=integration, root=args.root,
                              stream=args.stream, since=since, report=say, **service)
    where = f"{args.tiled}{'/' + args.catalog if args.catalog else ''}"
    stop = threading.Event()
    previous = _on_signals(stop)
    try:
        watcher.start()
        say(f"xrd-mask watch: watching {where} (stream {args.stream}); results under "
            f"{args.root}. Ctrl-C stops.")
        watcher.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("stopping: finishing the queued frames")
        finished = watcher.close(timeout=600)
    left = watcher.waiting()
    say("stopped" + (f"; not delivered yet: {left}" if left else ""))
    return 0 if finished else 1


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGINT and SIGTERM set ``stop`` (the watcher's loop ends within a quarter second)."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous
