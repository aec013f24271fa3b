"""``xrd-mask reprocess``: mask stored runs (by uid or query) or frame-series nodes again."""

from __future__ import annotations

import argparse
from pathlib import Path

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

ORDER = 5


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reprocess", help="mask stored runs or frame series in Tiled again (resumable)",
        description="Mask and integrate stored frames again into versioned Tiled results. "
                    "Same settings skip the frames already done; new settings (model, PONI, "
                    "masker, integration) write a new result version beside the old one.")
    p.add_argument("uids", nargs="*", metavar="UID", help="Bluesky run start uids")
    p.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                   help="runs whose start document has KEY == VALUE (repeat: all must hold)")
    p.add_argument("--node", action="append", default=[], metavar="PATH",
                   help="a Tiled array node holding a frame series N x H x W (repeatable)")
    p.add_argument("--poni", type=Path, default=None,
                   help="PONI file for every source (default: the one each source carries)")
    add_tiled(p)
    add_dask(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_if_misoriented(p, "a source")
    add_masker(p)
    add_integration(p)
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..errors import ConfigError
    from ..reprocess import AllOf, parse_query, reprocess

    sources: list = list(args.uids) + list(args.node)
    if args.query:
        sources.append(AllOf(tuple(parse_query(q) for q in args.query)))
    if not sources:
        raise ConfigError("nothing to reprocess: give run uids, --query KEY=VALUE or --node PATH")
    check_workers(args)
    if args.poni is not None and not args.poni.is_file():
        from ..errors import GeometryError

        raise GeometryError(f"PONI file {str(args.poni)!r} not found; pass --poni FILE")
    settings = integration_from_args(args)
    _, runs = connect_from_args(args)
    from ..tiled.access import check_writable

    check_writable(runs, uri=args.tiled)  # one clear error before any frame, nothing written
    masker = masker_from_options(args)
    summary = reprocess(runs, sources, masker=masker, poni=args.poni,
                        settings=settings, root=args.root, dask=args.dask,
                        workers=args.workers, progress=not args.no_progress,
                        if_misoriented=args.if_misoriented)
    if args.no_progress:
        print(summary.table())
    base = args.tiled.split("?")[0].rstrip("/")
    for r in summary.runs:  # where each result is, for a client or curl
        if r.result_path:
            print(f"{r.label}: result version {r.version} at {r.result_path} "
                  f"({base}/metadata/{r.result_path})")
    return 0 if summary.ok else 1
