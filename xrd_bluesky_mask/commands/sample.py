"""``xrd-mask sample``: write a simulated frame, its PONI and its true mask to try on."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 1
#: `xrd_bluesky_mask.apps.sample.SAMPLE_SCENES` (named here so `xrd-mask --help` stays light)
SCENES = ("rings_spots", "spots_po", "spots_texture", "perfect")


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a frame shape: give ROWSxCOLS (e.g. 1024x1024) or one number"
        ) from None
    return rows, cols


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sample", help="write a simulated frame and its PONI to try xrd-mask predict on",
        description="Simulate a powder frame with single-crystal spots (module gaps, a "
                    "beamstop, dead and hot pixels) and write it as OUTDIR/sample_SCENE.tif "
                    "with its PONI (sample_SCENE.poni, no flip needed) and its true mask "
                    "(sample_SCENE_truth.tif: 0 keep, 1 spot, 2 static), then print the "
                    "xrd-mask predict line that masks it.")
    p.add_argument("out_dir", type=Path, metavar="OUTDIR", help="folder to write into")
    p.add_argument("--scene", choices=SCENES, default="rings_spots",
                   help="rings_spots (default: smooth rings and spots), spots_po (preferred "
                        "orientation), spots_texture (grainy rings), perfect (no spots)")
    p.add_argument("--shape", type=_shape, default=(1024, 1024), metavar="ROWSxCOLS",
                   help="frame shape in pixels (default 1024x1024)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from ..apps.sample import write_sample

    files = write_sample(args.out_dir, scene=args.scene, shape=args.shape, seed=args.seed)
    print(f"wrote {files.frame}\n      {files.poni}\n      {files.truth}  (true mask: "
          f"{100 * files.spot_fraction:.2f} % spot pixels)\n\n"
          f"mask it:\n  {files.predict_command(args.out_dir / 'masks')}")
    return 0
