"""`xrd-mask`: the console script. Shared options live here; each sub-command is a module of
:mod:`xrd_bluesky_mask.commands` (found at run time, ordered by its ``ORDER``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


def add_integration(p: argparse.ArgumentParser) -> None:
    """The pyFAI integration options (--npt, --unit, --polarization)."""
    g = p.add_argument_group("integration")
    g.add_argument("--npt", type=int, default=2000, help="number of radial bins (default 2000)")
    g.add_argument("--unit", default="2th_deg", choices=["2th_deg", "q_A^-1"],
                   help="binning unit: 2θ in degrees or q in 1/Å (default 2th_deg)")
    g.add_argument("--polarization", type=float, default=None,
                   help="polarisation factor in [-1, 1] (e.g. 0.99); none by default")


def add_masker(p: argparse.ArgumentParser, default: str = "unet") -> None:
    """The masker options (--masker, --model, --threshold, ...)."""
    g = p.add_argument_group("masker")
    g.add_argument("--masker", default=default, help=f"unet | classical | a plugin ({default})")
    g.add_argument("--model", default=None,
                   help="model folder, 'light' (the packaged lighter network), or a "
                   "registered model id or version (default: the active model)")
    g.add_argument("--threshold", type=float, default=None,
                   help="U-Net spot-probability cut in (0, 1); default: the model card's")
    g.add_argument("--n-sigma", type=float, default=3.0,
                   help="classical masker cut in robust standard deviations (default 3)")
    g.add_argument("--inference", default="halo", choices=["halo", "quilt"],
                   help="U-Net inference: halo (whole-frame tiles, fast) or quilt (qlty windows)")
    g.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips")
    g.add_argument("--device", default=None, help="torch device (default: cuda if usable)")
    g.add_argument("--precision", default="auto",
                   choices=["auto", "fp32", "bf16", "bf16-fused", "fp16"],
                   help="U-Net engine (default auto: the fastest on this machine whose masks "
                   "agree with fp32, measured once per machine and model and cached)")
    g.add_argument("--candidate-tiles", default="off", choices=["off", "fast", "on"],
                   help="U-Net: run the network only on the parts of tiles holding candidate "
                   "spot pixels: on the batched fast path (fast), also for single frames with "
                   "their probability image (on), or nowhere (off, the default)")


def masker_from_args(args: argparse.Namespace) -> Any:
    """Build the masker the options ask for.

    The name and ranges are checked first, so a bad option fails at once (as a `ConfigError`
    naming it) instead of after the U-Net model has loaded.
    """
    from .errors import ConfigError
    from .masking import available_maskers, get_masker

    known = available_maskers()
    if args.masker not in known:
        raise ConfigError(f"--masker {args.masker}: no such masker; choose one of "
                          f"{', '.join(sorted(known))}")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ConfigError(f"--threshold {args.threshold:g}: must be in (0, 1)")
    if not args.n_sigma > 0:
        raise ConfigError(f"--n-sigma {args.n_sigma:g}: must be greater than 0")
    if args.masker == "unet":
        return get_masker("unet", model=args.model, threshold=args.threshold,
                          inference=args.inference, tta=args.tta, device=_device(args.device),
                          precision=getattr(args, "precision", "auto"),
                          candidates=getattr(args, "candidate_tiles", "off"))
    if args.masker == "classical":
        return get_masker("classical", n_sigma=args.n_sigma)
    return get_masker(args.masker)


def _device(device: str | None) -> str | None:
    """``--device`` checked by torch's own parser (a typo is a `ConfigError`, not a crash)."""
    if device is None:
        return None
    import torch

    from .errors import ConfigError

    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {device}: {exc}") from None
    return device


def settings_from_options(model: type[T], args: argparse.Namespace,
                          options: Mapping[str, str], *, what: str = "settings") -> T:
    """The pydantic ``model`` built from the options: ``options`` maps each field to its
    option (``{"npt": "--npt"}``), and the attribute is the option's argparse ``dest``.

    A value the model refuses becomes a `ConfigError` naming the option: the one place where
    CLI options turn into validated settings.
    """
    from pydantic import ValidationError

    from .errors import ConfigError

    values = {name: getattr(args, option.lstrip("-").replace("-", "_"))
              for name, option in options.items()}
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, options, what=what) from None


INTEGRATION_OPTIONS = {"npt": "--npt", "unit": "--unit", "polarization_factor": "--polarization"}


def integration_from_args(args: argparse.Namespace) -> Any:
    """IntegrationSettings from the options (a `ConfigError` names a bad one)."""
    from .integration import IntegrationSettings

    return settings_from_options(IntegrationSettings, args, INTEGRATION_OPTIONS,
                                 what="integration options")


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
