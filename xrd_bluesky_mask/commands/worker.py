"""``xrd-mask worker``: the masking callback as a service fed by Bluesky's 0MQ proxy or Kafka."""

from __future__ import annotations

import argparse
import logging

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
    add_service(p)
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
    service = service_from_args(args)
    integration = integration_from_args(args)
    client, runs = connect_from_args(args)
    masker = masker_from_options(args)
    callback = make_callback(client, runs=runs, masker=masker, integration=integration,
                             root=args.root, **service)
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
