"""`xrd-mask`: demo | predict | train | evaluate. The parser is here, the work elsewhere."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _add_integration(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("integration")
    g.add_argument("--npt", type=int, default=2000, help="number of radial bins (default 2000)")
    g.add_argument("--unit", default="2th_deg", choices=["2th_deg", "q_A^-1"],
                   help="binning unit: 2θ in degrees or q in 1/Å (default 2th_deg)")
    g.add_argument("--polarization", type=float, default=None,
                   help="polarisation factor in [-1, 1] (e.g. 0.99); none by default")


def _add_masker(p: argparse.ArgumentParser, default: str = "unet") -> None:
    g = p.add_argument_group("masker")
    g.add_argument("--masker", default=default, help=f"unet | classical | a plugin ({default})")
    g.add_argument("--model", type=Path, default=None,
                   help="model folder (model_card.json + weights); default: the packaged model")
    g.add_argument("--threshold", type=float, default=None,
                   help="U-Net spot-probability cut in (0, 1); default: the model card's")
    g.add_argument("--n-sigma", type=float, default=3.0,
                   help="classical masker cut in robust standard deviations (default 3)")
    g.add_argument("--inference", default="halo", choices=["halo", "quilt"],
                   help="U-Net inference: halo (whole-frame tiles, fast) or quilt (qlty windows)")
    g.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips")
    g.add_argument("--device", default=None, help="torch device (default: cuda if usable)")


def masker_from_args(args: argparse.Namespace):
    """Build the masker the options ask for."""
    from .masking import get_masker

    if args.masker == "unet":
        return get_masker("unet", model=args.model, threshold=args.threshold,
                          inference=args.inference, tta=args.tta, device=args.device)
    if args.masker == "classical":
        return get_masker("classical", n_sigma=args.n_sigma)
    return get_masker(args.masker)


def integration_from_args(args: argparse.Namespace):
    """IntegrationSettings from the options."""
    from .integration import IntegrationSettings

    return IntegrationSettings(npt=args.npt, unit=args.unit, polarization_factor=args.polarization)


def build_parser() -> argparse.ArgumentParser:
    """The ``xrd-mask`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="xrd-mask",
        description="Mask single-crystal spots in powder-XRD frames and integrate them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo",
        help="a Bluesky scan of simulated frames masked live, results in Tiled (embedded server)",
        description="Starts a local Tiled server (or uses --tiled), runs count([det], N) on a "
        "simulated XRD detector with TiledWriter and the masking callback, then prints where "
        "the results live and how to query them, and writes a PNG. --offline instead scores "
        "the U-Net and the classical filter against the simulator's ground truth.",
    )
    d.add_argument("--frames", type=int, default=5, help="frames to scan (default 5)")
    d.add_argument("--size", type=int, default=2880, help="frame size, px (default 2880)")
    d.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    d.add_argument("--out", type=Path, default=Path("xrd-mask-demo"), help="output folder")
    d.add_argument("--tiled", default=None, metavar="URI",
                   help="use this Tiled server instead of the embedded one (API key from "
                   "--api-key or TILED_API_KEY)")
    d.add_argument("--api-key", default=None, help="Tiled API key (default: TILED_API_KEY)")
    d.add_argument("--keep", action="store_true",
                   help="leave the embedded server running and print its URL (Ctrl-C to stop)")
    d.add_argument("--offline", action="store_true",
                   help="no Tiled/Bluesky: simulate, mask, score against the ground truth")
    _add_masker(d)
    _add_integration(d)

    p = sub.add_parser("predict", help="mask image files and write masks + 1D patterns")
    p.add_argument("images", nargs="+", type=Path, help="TIFF/EDF/CBF/NPY/HDF5 frames")
    p.add_argument("--poni", required=True, type=Path, help="pyFAI PONI file of the detector")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default .)")
    p.add_argument("--png", action="store_true", help="also write an overlay PNG per frame")
    p.add_argument("--flipud", action="store_true",
                   help="flip frames up-down before the PONI applies (e.g. Dioptas orientation)")
    p.add_argument("--index", type=int, default=None, help="frame index in a 3D HDF5 stack")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path (default: auto)")
    p.add_argument("--user-mask", type=Path, default=None,
                   help="image file, non-zero = always exclude (beamstop, bad pixels)")
    _add_masker(p)
    _add_integration(p)

    t = sub.add_parser("train", help="train a U-Net on simulated frames or image+mask files")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, best/)")
    t.add_argument("--images", nargs="+", type=Path, default=None,
                   help="train on these frames instead of simulated ones (needs --masks, --poni)")
    t.add_argument("--masks", nargs="+", type=Path, default=None,
                   help="label masks for --images (0 = no spot, 1 = spot, other = ignore)")
    t.add_argument("--poni", type=Path, default=None, help="PONI of the --images detector")
    t.add_argument("--init", type=Path, default=None,
                   help="fine-tune from this model folder instead of a fresh network")
    t.add_argument("--frames", type=int, default=32, help="simulated frames (default 32)")
    t.add_argument("--size", type=int, default=1024, help="simulated frame size, px")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=50)
    t.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (paper: 1e-2)")
    t.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    t.add_argument("--spot-weight", type=float, default=4.0, help="CE weight of the spot class")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time")
    t.add_argument("--model-id", default="xrdmask-unet")
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--device", default=None)
    e = sub.add_parser("evaluate", help="score maskers on held-out simulated frames")
    e.add_argument("--size", type=int, default=2880, help="frame size, px (default 2880)")
    e.add_argument("--frames-per-set", type=int, default=4,
                   help="frames in each held-out set (presets, transfer); default 4")
    e.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder")
    _add_masker(e)
    _add_integration(e)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xrd-mask`` console script; returns the exit code."""
    from .errors import XRDMaskError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            if args.offline:
                from .demo import run_demo

                run_demo(args.out, frames=args.frames, size=args.size, seed=args.seed,
                         masker=masker_from_args(args), settings=integration_from_args(args))
                return 0
            from .live import run_live_demo

            summary = run_live_demo(frames=args.frames, size=args.size, seed=args.seed,
                                    masker=masker_from_args(args), tiled_uri=args.tiled,
                                    api_key=args.api_key, keep=args.keep, out_dir=args.out)
            return 0 if summary.get("exit_status") == "success" else 1
        if args.command == "predict":
            return _predict(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "train":
            from .training.run import train_from_args

            train_from_args(args, argv)
            return 0
    except XRDMaskError as exc:
        print(f"xrd-mask: error: {exc}", file=sys.stderr)
        return 2
    return 1


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, write_report
    from .masking import get_masker

    unet = masker_from_args(argparse.Namespace(**{**vars(args), "masker": "unet"}))
    classical = get_masker("classical", n_sigma=args.n_sigma)
    report = evaluate({"unet": unet, "classical": classical, "none": None}, size=args.size,
                      frames_per_set=args.frames_per_set, settings=integration_from_args(args))
    print(report.markdown())
    out = write_report(report, args.out, {"unet": unet.settings(),
                                          "classical": classical.settings(),
                                          "size_px": args.size})
    print(f"\nwrote {out / 'evaluation.md'} and {out / 'evaluation.json'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .files import read_frame
    from .predict_files import predict_files

    if not args.poni.is_file():
        from .errors import GeometryError

        raise GeometryError(f"PONI file {str(args.poni)!r} not found; pass --poni FILE")
    user_mask = read_frame(args.user_mask) != 0 if args.user_mask else None
    masker = masker_from_args(args)
    outcomes = predict_files(
        args.images, args.poni, masker, args.out, settings=integration_from_args(args),
        png=args.png, flipud=args.flipud, index=args.index, dataset=args.dataset,
        user_mask=user_mask,
    )
    print(f"{'file':40s} {'spots %':>8s} {'static %':>9s} {'s':>6s}")
    for o in outcomes:
        if o.error:
            continue
        print(f"{o.path.name:40s} {100 * o.spot_fraction:8.3f} "
              f"{100 * o.static_fraction:9.3f} {o.seconds:6.2f}")
    failed = [o for o in outcomes if o.error]
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} file(s) failed; nothing was written for them:",
              file=sys.stderr)
        for o in failed:
            print(f"  {o.path}: {o.error}", file=sys.stderr)
        return 1
    print(f"\nwrote {sum(len(o.written) for o in outcomes)} files to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
