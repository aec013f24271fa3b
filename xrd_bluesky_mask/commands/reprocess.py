"""``xrd-mask reprocess``: mask stored runs (by uid or query) or frame-series nodes again."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..cli import add_integration, add_masker, integration_from_args

ORDER = 5


def add_tiled(p: argparse.ArgumentParser) -> None:
    """The Tiled connection options (--tiled, --api-key, --catalog, --root)."""
    g = p.add_argument_group("tiled")
    g.add_argument("--tiled", metavar="URI", default=os.environ.get("TILED_URI"),
                   help="Tiled server, e.g. http://HOST:8000/api/v1 (default: $TILED_URI)")
    g.add_argument("--api-key", default=None,
                   help="Tiled API key (default: the key in the URI, else $TILED_API_KEY)")
    g.add_argument("--catalog", metavar="PATH", default="",
                   help="container holding the runs (what TiledWriter writes to; default: root)")
    g.add_argument("--root", default="derived/xrd_mask",
                   help="results root (default derived/xrd_mask)")


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
    g = p.add_argument_group("scale-out").add_mutually_exclusive_group()
    g.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="Dask scheduler (tcp://HOST:8786): frames processed on its workers")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="start a local Dask cluster of N worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_masker(p)
    add_integration(p)
    return p


def masker_from_options(args: argparse.Namespace):
    """The masker the options ask for; ``--model`` may be a folder or a known model id, and
    ``--masker`` a plugin name or a ``module:Class`` import path."""
    import importlib

    from ..cli import masker_from_args
    from ..errors import ConfigError

    if args.model is not None and not Path(args.model).is_dir():
        from ..models.registry import ModelRegistry

        args.model = ModelRegistry().get(str(args.model)).path  # ModelError lists the known
    if ":" in args.masker:
        module, _, name = args.masker.partition(":")
        try:
            return getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--masker {args.masker}: cannot import it ({exc})") from None
    return masker_from_args(args)


def connect_from_args(args: argparse.Namespace):
    """``(root client, runs container)`` from --tiled/--api-key/--catalog, with clear errors."""
    from ..errors import TiledConnectionError
    from ..tiled.server import connect

    if not args.tiled:
        raise TiledConnectionError(
            "no Tiled server given: pass --tiled URI --api-key KEY (e.g. "
            "http://HOST:8000/api/v1) or set TILED_URI and TILED_API_KEY. A run taken in the "
            "beamline profile's embedded server: while the profile runs, its banner prints "
            "the URI, the key and this command; after it has exited, `xrd-mask serve "
            "<data dir>/tiled -r <data dir>/raw` (the banner's 'reopen' line) serves its "
            "catalog again and prints them.")
    client = connect(args.tiled, args.api_key)
    if not args.catalog:
        return client, client
    try:
        return client, client[args.catalog]
    except KeyError:
        from ..errors import UnknownSource

        raise UnknownSource(f"--catalog {args.catalog}: no such container on {args.tiled}; "
                            f"top-level keys: {list(client)[:10]}") from None


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..errors import ConfigError
    from ..reprocess import AllOf, parse_query, reprocess

    sources: list = list(args.uids) + list(args.node)
    if args.query:
        sources.append(AllOf(tuple(parse_query(q) for q in args.query)))
    if not sources:
        raise ConfigError("nothing to reprocess: give run uids, --query KEY=VALUE or --node PATH")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
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
                        workers=args.workers, progress=not args.no_progress)
    if args.no_progress:
        print(summary.table())
    base = args.tiled.split("?")[0].rstrip("/")
    for r in summary.runs:  # where each result is, for a client or curl
        if r.result_path:
            print(f"{r.label}: result version {r.version} at {r.result_path} "
                  f"({base}/metadata/{r.result_path})")
    return 0 if summary.ok else 1
