"""`xrd-mask`: the console script, its parser and nothing else. Each sub-command is a module of
:mod:`xrd_bluesky_mask.commands` (found at run time, ordered by its ``ORDER``); the options
several commands share live in :mod:`xrd_bluesky_mask.commands._options`."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType


def command_modules() -> list[ModuleType]:
    """The sub-command modules of :mod:`xrd_bluesky_mask.commands`, in menu order."""
    from . import commands

    mods = [importlib.import_module(f"{commands.__name__}.{m.name}")
            for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The ``xrd-mask`` argument parser and the module that runs each sub-command."""
    parser = argparse.ArgumentParser(
        prog="xrd-mask",
        description="Mask single-crystal spots in powder-XRD frames and integrate them.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log this package's INFO messages; -vv also those of pyFAI, "
                        "tiled and the other libraries")
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for mod in command_modules():
        p = mod.add_parser(sub)
        runners[p.prog.split()[-1]] = mod
    return parser, runners


#: Loggers that only say that an optional accelerator is missing (pyFAI runs without OpenCL).
QUIET_LOGGERS = ("silx.opencl.common", "pyFAI.opencl")


def configure_logging(verbosity: int) -> None:
    """Log WARNING and above; with ``-v`` this package's INFO too (one line per run, epoch,
    chosen engine), with ``-vv`` every library's INFO (pyFAI, tiled, numexpr, ...)."""
    logging.basicConfig(level=logging.INFO if verbosity >= 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbosity >= 1:
        logging.getLogger("xrd_bluesky_mask").setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xrd-mask`` console script; returns the exit code.

    Every error of the `XRDMaskError` family is the user's to fix (an option, a file, a
    server), so it is printed as one message with exit code 2; Ctrl-C exits with 130. Any
    other exception is a bug and keeps its traceback.
    """
    from .errors import XRDMaskError

    parser, runners = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return runners[args.command].run(args, argv)
    except XRDMaskError as exc:
        print(f"xrd-mask: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
