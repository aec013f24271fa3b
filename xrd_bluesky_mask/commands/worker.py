"""``xrd-mask worker``: the masking callback as a service fed by Bluesky's 0MQ proxy or Kafka."""

from __future__ import annotations

import argparse
import logging

from ._options import (
    add_dask,
    add_if_misoriented,
    add_integration,
    add_masker,
    add_tiled,
    check_workers,
    connect_from_args,
    integration_from_args,
    masker_from_options,
)

ORDER = 6


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "worker", help="mask runs published over 0MQ or Kafka (a service beside the session)",
        description="Subscribe to the documents a RunEngine publishes and mask every run's "
                    "frames, reading them from Tiled (TiledWriter with batch_size=1 must be "
                    "subscribed before the publisher) and writing results to Tiled. Stop "
                    "with Ctrl-C or SIGTERM: queued frames are finished first.")
    src = p.add_argument_group("documents").add_mutually_exclusive_group(required=True)
    src.add_argument("--zmq", metavar="HOST:PORT",
                     help="output address of a bluesky-0MQ-proxy (its --out-address)")
    src.add_argument("--kafka", metavar="BOOTSTRAP",
                     help="Kafka bootstrap servers, e.g. kafka1:9092 (needs bluesky-kafka)")
    p.add_argument("--topic", action="append", default=[], metavar="T",
                   help="Kafka topic of the documents (repeatable; with --kafka)")
    p.add_argument("--group-id", default="xrd-mask", help="Kafka consumer group (xrd-mask)")
    p.add_argument("--prefix", default="", help="0MQ publisher prefix to listen to (all)")
    add_tiled(p)
    p.add_argument("--poni", default=None,
                   help="PONI file overriding the geometry each run carries")
    p.add_argument("--quiet-s", type=float, default=0.0,
                   help="wait until no document came for this many seconds before working "
                        "(0: at once; use ~0.5 on the RunEngine's own machine)")
    p.add_argument("--retry-for", type=float, default=600.0,
                   help="seconds to keep retrying a frame read while Tiled is unreachable "
                        "(results wait in the journal as long as it takes)")
    p.add_argument("--journal", default=None, metavar="DIR",
                   help="folder of the results journal (default: per server and root under "
                        "$XRD_MASK_JOURNAL or the user state folder); a restarted worker "
                        "writes what its predecessor left there")
    p.add_argument("--journal-max-gb", type=float, default=2.0,
                   help="most GB of results the journal holds while Tiled is away (2)")
    add_if_misoriented(p, "a run")
    add_dask(p, what="frames masked and integrated (results written here, in order)")
    add_masker(p)
    add_integration(p)
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..bluesky.remote import kafka_dispatcher, make_callback, serve, zmq_dispatcher

    if args.kafka:
        dispatcher = kafka_dispatcher(args.kafka, args.topic, group_id=args.group_id)
        where = f"Kafka {args.kafka} topics {', '.join(args.topic)}"
    else:
        dispatcher = zmq_dispatcher(args.zmq, prefix=args.prefix.encode())
        where = f"0MQ proxy {args.zmq}"
    if args.poni is not None:
        from ..geometry import poni_text_from

        args.poni = poni_text_from(args.poni)  # GeometryError if missing
    check_workers(args)
    integration = integration_from_args(args)
    client, runs = connect_from_args(args)
    masker = masker_from_options(args)
    callback = make_callback(client, runs=runs, masker=masker, poni=args.poni,
                             integration=integration, root=args.root,
                             quiet_s=args.quiet_s, retry_for=args.retry_for,
                             journal=args.journal,
                             journal_max_bytes=int(args.journal_max_gb * 1e9),
                             if_misoriented=args.if_misoriented,
                             dask=args.dask, workers=args.workers)
    if not args.verbose:
        logging.getLogger("xrd_bluesky_mask").setLevel(logging.INFO)
        logging.getLogger("xrd_bluesky_mask.azimuthal").setLevel(logging.WARNING)

    def ready() -> None:
        cluster = (f"; frames masked on the Dask cluster at {args.dask}" if args.dask else
                   f"; frames masked on a local Dask cluster of {args.workers} processes"
                   if args.workers else "")
        print(f"xrd-mask worker: listening to {where}; results to {args.tiled} under "
              f"{args.root}{cluster}", flush=True)

    return serve(dispatcher, callback, on_ready=ready)
