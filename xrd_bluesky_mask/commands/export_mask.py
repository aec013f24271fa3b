"""``xrd-mask export-mask``: a Tiled result's masks as pyFAI/Dioptas mask files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import EXPORT_FORMATS, add_tiled

ORDER = 6


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export-mask", help="write a Tiled result's masks as pyFAI/Dioptas mask files",
        description="Write the masks of a run's (or frame series') xrd_mask result as files "
                    "pyFAI (EDF/NPY, 1 = excluded) and Dioptas (.mask) load, one per frame, "
                    "in the orientation the frames are stored in.")
    p.add_argument("source", metavar="UID|PATH", help="run start uid or frame-series node path")
    p.add_argument("--frame", action="append", type=int, default=None, metavar="N",
                   help="frame index (repeatable; default: every frame done)")
    p.add_argument("--format", action="append", default=None, choices=EXPORT_FORMATS,
                   dest="formats", metavar="FORMAT",
                   help="edf, npy (pyFAI) or dioptas (.mask); repeatable (default edf)")
    p.add_argument("--version", type=int, default=None,
                   help="result version (default: the newest)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default .)")
    add_tiled(p)
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..errors import UnknownSource
    from ..tiled.result_masks import export_result_masks
    from ._options import connect_from_args

    client, _ = connect_from_args(args)
    try:
        written = export_result_masks(client, args.source, args.out, frames=args.frame,
                                      formats=args.formats or ["edf"], root=args.root,
                                      version=args.version)
    except KeyError as exc:
        raise UnknownSource(str(exc.args[0]) if exc.args else str(exc)) from None
    for path in written:
        print(path)
    _say_which_version(client, args)
    return 0


def _say_which_version(client, args: argparse.Namespace) -> None:
    """When the source has several result versions, name the one exported (on stderr, so
    the list of files on stdout stays a plain list)."""
    from ..tiled.results import result_versions

    versions = [v for v, _ in result_versions(client, args.source, root=args.root)]
    if len(versions) > 1:
        took = versions[-1] if args.version is None else args.version
        how = "the newest; --version N for another" if args.version is None else "--version"
        print(f"exported result version {took} of {args.source} ({how}; versions: "
              f"{', '.join(map(str, versions))})", file=sys.stderr)
