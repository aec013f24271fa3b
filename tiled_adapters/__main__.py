"""``python -m tiled_adapters``: serve or register folders of detector images with Tiled.

    python -m tiled_adapters serve DIR [tiled serve directory options]
        ``tiled serve directory DIR`` with the walker and adapters (temporary catalog).
    python -m tiled_adapters register URI DIR [--api-key KEY] [--prefix PATH]
        Register DIR on a running server (e.g. one started from serve_frames.yml). Checks
        first that the server can read DIR; exit 2 with what to do if not.
    python -m tiled_adapters flags
        Print the ``--walker``/``--adapter`` flags for ``tiled serve directory`` or
        ``tiled register``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from .mimetypes import ADAPTERS_BY_MIMETYPE

WALKER = "tiled_adapters:group_detector_series"


def tiled_flags() -> list[str]:
    """The ``tiled serve directory`` / ``tiled register`` flags that select these adapters."""
    flags = ["--walker", WALKER]
    for mimetype, adapter in ADAPTERS_BY_MIMETYPE.items():
        flags += ["--adapter", f"{mimetype}={adapter}"]
    return flags


def _tiled_exe() -> str:
    exe = Path(sys.executable).with_name("tiled")
    return str(exe) if exe.exists() else (shutil.which("tiled") or "tiled")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiled_adapters", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="tiled serve directory DIR with these adapters")
    serve.add_argument("directory", type=Path)
    counter_help = ("which number of the file names counts frames: 1 the first, -1 the last "
                    "(default: the one number that varies across a group of files)")
    serve.add_argument("--counter", type=int, default=None, help=counter_help)
    reg = sub.add_parser("register", help="register DIR on a running Tiled server")
    reg.add_argument("uri", help="server URI, e.g. http://127.0.0.1:8000/api/v1")
    reg.add_argument("directory", type=Path)
    reg.add_argument("--api-key", default=None, help="default: $TILED_API_KEY")
    reg.add_argument("--prefix", default=None,
                     help="container path to register under (default: the folder's name)")
    reg.add_argument("--counter", type=int, default=None, help=counter_help)
    sub.add_parser("flags", help="print the --walker/--adapter flags for tiled's own CLI")
    args, extra = parser.parse_known_args(argv)
    if args.command == "flags":
        flags = tiled_flags()
        print(" \\\n".join(shlex.join(flags[i:i + 2]) for i in range(0, len(flags), 2)))
        return 0
    if extra:
        if args.command != "serve":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.directory.is_dir():
        print(f"error: {str(args.directory)!r} is not a folder", file=sys.stderr)
        return 2
    from xrd_bluesky_mask.errors import XRDMaskError

    from .server_reads import check_folder_readable

    try:
        check_folder_readable(args.directory)
    except XRDMaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        cmd = [_tiled_exe(), "serve", "directory", str(args.directory.resolve()),
               *tiled_flags(), *extra]
        if args.counter is not None:
            from .walkers import COUNTER_ENV

            os.environ[COUNTER_ENV] = str(args.counter)
        os.execv(cmd[0], cmd) if os.path.isabs(cmd[0]) else os.execvp(cmd[0], cmd)
        return 1  # not reached
    from xrd_bluesky_mask.tiled.connect import connect

    from .walkers import register_frames

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("tiled_adapters", "tiled.client.register"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        client = connect(args.uri, args.api_key)
        node = register_frames(client, args.directory, args.prefix, counter=args.counter)
    except XRDMaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, child in node.items():
        print(f"{node.uri.split('/metadata/', 1)[-1]}/{key}: "
              f"{getattr(child, 'shape', 'container')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
