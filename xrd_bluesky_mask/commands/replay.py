"""``xrd-mask replay``: write raw runs that TiledWriter kept in its backup while Tiled was away.

A `Session` (the beamline profile, the demo) replays them itself once Tiled answers again; this
command does it from a shell: after the session has ended, for a backup left by a session that
died, or to look at what waits (``--list``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_tiled, connect_from_args

ORDER = 7


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "replay", help="write runs kept in TiledWriter's backup (Tiled was away) into Tiled",
        description="When Tiled does not answer during a scan, the session's TiledWriter keeps "
                    "the whole run in a JSON Lines backup file and the scan goes on. This "
                    "writes those runs into Tiled (the part written before the outage is "
                    "replaced by the complete run) and removes each file once its run, stop "
                    "document included, is in Tiled. Runs without a stop document are still "
                    "being written, or their process stopped: listed, and replayed only with "
                    "--incomplete.")
    add_tiled(p)
    p.add_argument("--backup", type=Path, default=None, metavar="DIR",
                   help="the backup folder (default: the session's for this server and "
                        "--catalog, under $XRD_MASK_RUN_BACKUP or the user state folder; an "
                        "embedded server's: the folder the profile's banner and log name)")
    p.add_argument("--list", action="store_true", help="only list what waits")
    p.add_argument("--incomplete", action="store_true",
                   help="also replay runs whose backup has no stop document (their process "
                        "stopped mid-run); they stay without a stop document in Tiled")
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..bluesky.backup import RunBackups, backup_folder_for, replay_file
    from ..errors import ConfigError

    folder = args.backup
    if folder is None:
        if not args.tiled:
            raise ConfigError("give --backup DIR, or --tiled URI (and --catalog) to find the "
                              "session's backup folder for that server")
        folder = backup_folder_for(args.tiled, args.catalog)
    if not folder.is_dir():
        print(f"no run backup at {folder}: nothing waits")
        return 0
    backups = RunBackups(folder)
    files = backups.files()
    for backup in files:
        print(backup.describe())
    if not files:
        print(f"no run waits in {folder}")
    if args.list or not files:
        return 0
    _, runs = connect_from_args(args)
    written = 0
    for backup in files:
        if not (backup.complete or args.incomplete):
            print(f"skipped {backup.path.name}: no stop document (--incomplete replays it)")
            continue
        replay_file(runs, backup)  # errors stop here; the file and the later ones stay
        written += 1
        print(f"replayed run {backup.uid} into {args.tiled}")
    print(f"{written} runs replayed; {len(backups.files())} backups left in {folder}")
    return 0
