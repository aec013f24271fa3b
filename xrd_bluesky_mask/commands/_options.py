"""Options several ``xrd-mask`` sub-commands share, and how they become settings (not a
command: the CLI skips modules whose name starts with ``_``). Commands import from here, never
from each other."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Mask formats for other tools (``--export`` of ``predict`` and ``export-mask``).
EXPORT_FORMATS = ("edf", "npy", "dioptas")


def add_integration(p: argparse.ArgumentParser) -> None:
    """The pyFAI integration options (--npt, --unit, --polarization)."""
    g = p.add_argument_group("integration")
    g.add_argument("--npt", type=int, default=2000, help="number of radial bins (default 2000)")
    g.add_argument("--unit", default="2th_deg", choices=["2th_deg", "q_A^-1"],
                   help="binning unit: 2θ in degrees or q in 1/Å (default 2th_deg)")
    g.add_argument("--polarization", type=float, default=None,
                   help="polarisation factor in [-1, 1] (e.g. 0.99); none by default")


def add_if_misoriented(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                       what: str = "a run") -> None:
    """``--if-misoriented``: what happens to ``what`` when the geometry check finds that its
    frames fit the PONI only flipped or transposed (one choice for every path)."""
    p.add_argument("--if-misoriented", choices=("refuse", "apply", "keep"), default="refuse",
                   help=f"when the geometry check finds that {what} fits the PONI only "
                        "flipped or transposed: refuse (default: write nothing for it and say "
                        "which option fits), apply (mask it in the orientation that fits and "
                        "record that), keep (mask it as given, with the warning)")


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
    from ..errors import ConfigError
    from ..masking import available_maskers, get_masker
    from ..masking.settings import UNetSettings

    known = available_maskers()
    if args.masker not in known:
        raise ConfigError(f"--masker {args.masker}: no such masker; choose one of "
                          f"{', '.join(sorted(known))}")
    if args.masker == "unet":
        settings = settings_from_options(UNetSettings, args, UNET_OPTIONS,
                                         what="masker options")
        _device(settings.device)
        return get_masker("unet", model=args.model, settings=settings)
    if args.masker == "classical":
        if not args.n_sigma > 0:
            raise ConfigError(f"--n-sigma {args.n_sigma:g}: must be greater than 0")
        return get_masker("classical", n_sigma=args.n_sigma)
    return get_masker(args.masker)


#: `UNetSettings` fields and the options that set them (`add_masker`).
UNET_OPTIONS = {"threshold": "--threshold", "inference": "--inference", "tta": "--tta",
                "device": "--device", "precision": "--precision",
                "candidates": "--candidate-tiles"}


def _device(device: str | None) -> str | None:
    """``--device`` checked by torch's own parser (a typo is a `ConfigError`, not a crash)."""
    if device is None:
        return None
    import torch

    from ..errors import ConfigError

    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {device}: {exc}") from None
    return device


def settings_from_options(model: type[T], args: argparse.Namespace,
                          options: Mapping[str, str], *, what: str = "settings") -> T:
    """The pydantic ``model`` built from the options: ``options`` maps each field to its
    option (``{"npt": "--npt"}``), and the attribute is the option's argparse ``dest`` (an
    option the command does not have keeps the model's default).

    A value the model refuses becomes a `ConfigError` naming the option: the one place where
    CLI options turn into validated settings.
    """
    from pydantic import ValidationError

    from ..errors import ConfigError

    dests = {name: option.lstrip("-").replace("-", "_") for name, option in options.items()}
    values = {name: getattr(args, dest) for name, dest in dests.items() if hasattr(args, dest)}
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, options, what=what) from None


INTEGRATION_OPTIONS = {"npt": "--npt", "unit": "--unit", "polarization_factor": "--polarization"}


def integration_from_args(args: argparse.Namespace) -> Any:
    """IntegrationSettings from the options (a `ConfigError` names a bad one)."""
    from ..azimuthal import IntegrationSettings

    return settings_from_options(IntegrationSettings, args, INTEGRATION_OPTIONS,
                                 what="integration options")


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


def add_dask(p: argparse.ArgumentParser, what: str = "frames processed") -> None:
    """The scale-out options (--dask ADDRESS | --workers N), one or the other."""
    g = p.add_argument_group("scale-out").add_mutually_exclusive_group()
    g.add_argument("--dask", metavar="ADDRESS", default=None,
                   help=f"Dask scheduler (tcp://HOST:8786): {what} on its workers")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="start a local Dask cluster of N worker processes")


def add_service(p: argparse.ArgumentParser, waits_for: str = "document") -> None:
    """The options of the long-running masking services (``worker`` and ``watch``): geometry
    override, yielding, read retries, the results journal, orientation and scale-out."""
    p.add_argument("--poni", default=None,
                   help="PONI file overriding the geometry each run carries")
    p.add_argument("--quiet-s", type=float, default=0.0,
                   help=f"wait until no {waits_for} came for this many seconds before working "
                        "(0: at once; ~0.5 on the RunEngine's own machine)")
    p.add_argument("--retry-for", type=float, default=600.0,
                   help="seconds to keep retrying a frame read while Tiled is unreachable "
                        "(results wait in the journal as long as it takes)")
    p.add_argument("--journal", default=None, metavar="DIR",
                   help="folder of the results journal (default: per server and root under "
                        "$XRD_MASK_JOURNAL or the user state folder, shared by the callback, "
                        "`xrd-mask worker` and `xrd-mask watch`); a restarted service writes "
                        "what its predecessor left there")
    p.add_argument("--journal-max-gb", type=float, default=2.0,
                   help="most GB of results the journal holds while Tiled is away (2)")
    add_if_misoriented(p, "a run")
    add_dask(p, what="frames masked and integrated (results written here, in order)")


def service_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`xrd_bluesky_mask.bluesky.remote.make_callback`'s keywords from `add_service`'s
    options (the PONI file read now: a `GeometryError` before anything starts)."""
    check_workers(args)
    poni = None
    if args.poni is not None:
        from ..geometry import poni_text_from

        poni = poni_text_from(args.poni)
    return {"poni": poni, "quiet_s": args.quiet_s, "retry_for": args.retry_for,
            "journal": args.journal, "journal_max_bytes": int(args.journal_max_gb * 1e9),
            "if_misoriented": args.if_misoriented, "dask": args.dask, "workers": args.workers}


def check_workers(args: argparse.Namespace) -> None:
    """``--workers`` is at least 1 (a `ConfigError` otherwise)."""
    from ..errors import ConfigError

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")


def masker_from_options(args: argparse.Namespace) -> Any:
    """The masker the options ask for; ``--model`` may be a folder or a known model id, and
    ``--masker`` a plugin name or a ``module:Class`` import path."""
    import importlib

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


def connect_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(root client, runs container)`` from --tiled/--api-key/--catalog, with clear errors."""
    from ..errors import TiledConnectionError
    from ..tiled.connect import connect

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
