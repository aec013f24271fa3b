"""``xrd-mask replay``: write what waits on this computer for a Tiled server (raw runs kept in
TiledWriter's backup, masking results kept in the journal while Tiled was away), list it, or
discard it.

A `Session` (the beamline profile, the demo) and a masking callback or worker replay their own
folders once Tiled answers again; this command does it from a shell: after the session has
ended, for folders left by a session that died or whose server refused its key, for folders of
a server that moved, or to look at what waits (``--list``, ``--all``) and remove it
(``--discard``). Nothing is removed without ``--discard``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._options import add_tiled, connect_from_args

ORDER = 7


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "replay", help="write runs and results kept on this computer while Tiled was away "
                       "into Tiled; list or discard them",
        description="When Tiled does not answer during a scan, the session's TiledWriter keeps "
                    "the whole run in a JSON Lines backup file and the masking results wait in "
                    "a journal, and the scan goes on. This writes both into Tiled: each raw "
                    "run replaces the part written before the outage and its file goes once "
                    "the run, stop document included, is in Tiled; then the results are "
                    "written (idempotent: a frame replayed twice is one result). Runs without a "
                    "stop document are still being written, or their process stopped: listed, "
                    "and replayed only with --incomplete. With --tiled the folders of that "
                    "server are found by themselves; --backup / --journal name others (e.g. "
                    "left for a server that has moved).")
    add_tiled(p)
    p.add_argument("--backup", type=Path, default=None, metavar="DIR",
                   help="a run-backup folder (default: those recorded for --tiled and "
                        "--catalog, under $XRD_MASK_RUN_BACKUP or the user state folder)")
    p.add_argument("--journal", type=Path, default=None, metavar="DIR",
                   help="a results-journal folder (default: those recorded for --tiled and "
                        "--root, under $XRD_MASK_JOURNAL or the user state folder)")
    p.add_argument("--list", action="store_true", help="only list what waits")
    p.add_argument("--all", action="store_true",
                   help="with --list: every folder, whatever server it waits for")
    p.add_argument("--discard", type=Path, action="append", default=[], metavar="DIR",
                   help="remove this backup or journal folder and what waits in it (see "
                        "--list --all); refused while a running session uses it")
    p.add_argument("--incomplete", action="store_true",
                   help="also replay runs whose backup has no stop document (their process "
                        "stopped mid-run); they stay without a stop document in Tiled")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds each results journal may wait for Tiled (default 120)")
    return p


def _same_server(a: str | None, b: str | None) -> bool:
    def norm(uri: str) -> str:
        return uri.split("?", 1)[0].rstrip("/")

    return bool(a) and bool(b) and norm(a or "") == norm(b or "")


def _folders(args: argparse.Namespace) -> list[Any]:
    """The leftovers this invocation is about (`Leftover`s)."""
    from ..bluesky.leftovers import find_leftovers, leftover_at

    named = [f for f in (args.backup, args.journal) if f is not None]
    if named:
        return [x for x in (leftover_at(f) for f in named) if x is not None]
    found = find_leftovers()
    if args.all:
        return found
    if not args.tiled:
        from ..errors import ConfigError

        raise ConfigError("give --tiled URI (the folders recorded for that server), --backup "
                          "DIR or --journal DIR, or --list --all for every folder")
    return [x for x in found if _same_server(x.uri, args.tiled)
            and (x.container or "") == ((args.catalog if x.kind == "raw runs"
                                         else args.root) or "").strip("/")]


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..bluesky.leftovers import discard

    for folder in args.discard:
        removed = discard(folder)
        print(f"removed {folder}" + (f": {removed.describe().split(', in ')[0]}"
                                     if removed else " (nothing waited there)"))
    if args.discard and not (args.list or args.tiled):
        return 0
    leftovers = _folders(args)
    for leftover in leftovers:
        print(leftover.describe())
        if leftover.kind == "raw runs":
            from ..bluesky.backup import RunBackups

            for backup in RunBackups(leftover.folder).files():
                print(f"  {backup.describe()}")
    if not leftovers:
        print("nothing waits" + (f" for {args.tiled}" if args.tiled and not args.all else ""))
    if args.list or not leftovers:
        return 0
    client, runs = connect_from_args(args)
    status = 0
    for leftover in (x for x in leftovers if x.kind == "raw runs"):
        status |= _replay_runs(args, runs, leftover.folder)
    for leftover in (x for x in leftovers if x.kind == "results"):
        status |= _replay_results(args, client, leftover)
    return status


def _replay_runs(args: argparse.Namespace, runs: Any, folder: Path) -> int:
    from ..bluesky.backup import RunBackups, replay_file

    backups = RunBackups(folder)
    written = 0
    for backup in backups.files():
        if not (backup.complete or args.incomplete):
            print(f"skipped {backup.path.name}: no stop document (--incomplete replays it)")
            continue
        replay_file(runs, backup)  # errors stop here; the file and the later ones stay
        written += 1
        print(f"replayed run {backup.uid} into {args.tiled}", flush=True)
    print(f"{written} runs replayed; {len(backups.files())} backups left in {folder}")
    return 0


def _replay_results(args: argparse.Namespace, client: Any, leftover: Any) -> int:
    from ..sinks.journaled import replay_journal
    from ..sinks.tiled import TiledResultSink

    root = leftover.container if leftover.container is not None else args.root

    def applied(kind: str, run: str, index: int | None) -> None:
        if args.verbose:
            print(f"{kind} run {run}" + ("" if index is None else f" frame {index}"),
                  flush=True)

    written, left, problems = replay_journal(
        leftover.folder, lambda: TiledResultSink(client, root=root), timeout=args.timeout,
        on_applied=applied)
    for problem in problems:
        print(f"not written: {problem}")
    print(f"{written} frame results written to {args.tiled} ({root}); {left} left in "
          f"{leftover.folder}")
    return 1 if left or problems else 0
