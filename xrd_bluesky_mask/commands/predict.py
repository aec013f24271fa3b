"""``xrd-mask predict``: mask image files and write masks + 1D patterns beside them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import (
    EXPORT_FORMATS,
    add_if_misoriented,
    add_integration,
    add_masker,
    integration_from_args,
    masker_from_args,
)

ORDER = 1
#: `xrd_bluesky_mask.io.mask_files.MASK_FORMATS` (named here so `xrd-mask --help` stays light)
def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="mask image files and write masks + 1D patterns")
    p.add_argument("images", nargs="+", type=Path, help="TIFF/EDF/CBF/NPY/HDF5 frames")
    p.add_argument("--poni", required=True, type=Path, help="pyFAI PONI file of the detector")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default .)")
    p.add_argument("--png", action="store_true", help="also write an overlay PNG per frame")
    p.add_argument("--export", action="append", default=[], choices=EXPORT_FORMATS,
                   metavar="FORMAT",
                   help="also write the mask for another tool, in the input's orientation: "
                        "edf or npy (NAME_mask.edf/.npy for pyFAI-integrate --mask), dioptas "
                        "(NAME.mask for Dioptas' Load mask); repeatable")
    g = p.add_argument_group(
        "orientation", "how the frame is turned before the PONI applies (the outputs keep the "
        "input's orientation); every frame is checked and a warning names the options to use")
    g.add_argument("--flipud", action="store_true",
                   help="flip frames up-down (e.g. a PONI made in Dioptas)")
    g.add_argument("--fliplr", action="store_true", help="flip frames left-right")
    g.add_argument("--transpose", action="store_true",
                   help="transpose frames (first, before any flip)")
    g.add_argument("--no-geometry-check", action="store_true",
                   help="skip the check of orientation and PONI (about 0.2-0.5 s per Mpx frame)")
    add_if_misoriented(g, "a file")
    p.add_argument("--index", type=int, default=None,
                   help="frame index in a stack (HDF5, NPY, multi-frame EDF/TIFF); the outputs "
                   "are named NAME_0003_mask.tif, NAME_0003.xy, ...")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path (default: auto)")
    p.add_argument("--user-mask", type=Path, default=None,
                   help="image file, non-zero = always exclude (beamstop, bad pixels)")
    add_masker(p)
    add_integration(p)
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..apps.predict_files import predict_files
    from ..azimuthal.orientation import Orientation
    from ..io import read_frame

    if not args.poni.is_file():
        from ..errors import GeometryError

        raise GeometryError(f"PONI file {str(args.poni)!r} not found; pass --poni FILE")
    settings = integration_from_args(args)  # checked before the model loads
    user_mask = read_frame(args.user_mask) != 0 if args.user_mask else None
    masker = masker_from_args(args)
    turn = Orientation(transpose=args.transpose, flipud=args.flipud, fliplr=args.fliplr)
    outcomes = predict_files(
        args.images, args.poni, masker, args.out, settings=settings,
        png=args.png, exports=args.export, orientation=turn,
        check=not args.no_geometry_check, index=args.index,
        dataset=args.dataset, user_mask=user_mask, if_misoriented=args.if_misoriented,
    )
    from ..apps.evaluate import SPOTS_PCT_HEAD, SPOTS_PCT_NOTE

    _report_geometry(outcomes)  # before the table, so it is read before the numbers
    sys.stderr.flush()
    if any(not o.error for o in outcomes):
        print(f"{'file':40s} {SPOTS_PCT_HEAD:>8s} {'static %':>9s} {'s':>6s}  orientation")
    for o in outcomes:
        if o.error:
            continue
        turned = o.orientation.name if o.orientation is not None else "-"
        if o.applied_from is not None:
            turned += f" (applied; asked {o.applied_from.name})"
        print(f"{o.path.name:40s} {100 * o.spot_fraction:8.3f} "
              f"{100 * o.static_fraction:9.3f} {o.seconds:6.2f}  {turned}")
    if any(not o.error for o in outcomes):
        print(SPOTS_PCT_NOTE + "; static %: of all pixels")
    failed = [o for o in outcomes if o.error]
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} file(s) failed; nothing was written for them:",
              file=sys.stderr)
        for o in failed:
            print(f"  {o.path}: {o.error}", file=sys.stderr)
        return 1
    print(f"\nwrote {sum(len(o.written) for o in outcomes)} files to {args.out}")
    return 0


def _report_geometry(outcomes: list) -> None:
    """The geometry check's warnings, one per kind (the first file's text, and how many more).
    A file that failed has its own message (a frame of NaN also "fits no PONI"; a refused
    orientation is listed with the failures), and one whose orientation was applied says so in
    the table."""
    kinds: dict[tuple[str, str], list] = {}
    for o in outcomes:
        if o.warning and not o.error and o.applied_from is None:
            kinds.setdefault((o.verdict.status, o.verdict.best.name), []).append(o)
    for found in kinds.values():
        more = f" (and {len(found) - 1} more file(s) alike)" if len(found) > 1 else ""
        print(f"\nwarning: {found[0].path.name}{more}: {found[0].warning}", file=sys.stderr)
