"""``xrd-mask serve``: serve a catalog made by an embedded server again (the beamline profile's
or the demo's), so that its runs can be reprocessed or exported after that session ended."""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

ORDER = 7


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve an embedded server's catalog again (the profile's, the demo's)",
        description="Start a Tiled server on the catalog folder an embedded server wrote "
                    "(catalog.db, data/), print its URI, API key and the commands that use "
                    "it, and serve until Ctrl-C. The beamline profile's banner prints this "
                    "command for its own catalog.")
    p.add_argument("directory", type=Path,
                   help="the catalog folder (the profile's: <data dir>/tiled)")
    p.add_argument("-r", "--readable", action="append", type=Path, default=[], metavar="DIR",
                   help="folder of external files the runs point at (the detector's HDF5 "
                        "files: the profile's <data dir>/raw); repeatable")
    p.add_argument("--api-key", default=None,
                   help="API key to serve with (default: the one kept in DIRECTORY/api_key, "
                        "the beamline profile's; else $TILED_API_KEY; else a new one, kept)")
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..errors import ConfigError
    from ..tiled.api_keys import kept_api_key
    from ..tiled.server import start_local_server

    if not (args.directory / "catalog.db").is_file():
        raise ConfigError(f"{args.directory} holds no catalog.db: give the folder an embedded "
                          "server wrote (the beamline profile's is <data dir>/tiled, as its "
                          "banner prints)")
    key = (args.api_key or kept_api_key(args.directory, create=False)
           or os.environ.get("TILED_API_KEY") or kept_api_key(args.directory))
    _stop_on_signals()
    server = start_local_server(args.directory, api_key=key, readable_storage=args.readable)
    with server:
        quoted = shlex.quote(server.api_key)
        print(f"Tiled server at {server.uri} serving {args.directory.resolve()}\n"
              f"API key: {server.api_key}\n\n"
              f"in another shell:\n"
              f"  export TILED_URI={server.uri} TILED_API_KEY={quoted}\n"
              f"  xrd-mask reprocess UID            # or: xrd-mask export-mask UID\n"
              f"in Python: from_uri({server.uri!r}, api_key={server.api_key!r})\n"
              "Ctrl-C stops it.", flush=True)
        try:
            while True:  # the server runs in this process's threads until Ctrl-C
                time.sleep(1.0)
        except KeyboardInterrupt:
            print("stopping the Tiled server", flush=True)
    return 0


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (a service manager's stop) both stop the server cleanly, also when
    it was started in the background, where the shell leaves SIGINT ignored."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
