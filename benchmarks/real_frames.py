"""Masks of real detector frames, model against model: overlay PNGs and the numbers to compare.

The real frames are the Dioptas test data in ``../shared/data/real`` (Pilatus 1M: a CeO2
calibrant with a few grains, and two Fe3O4C map frames with elongated spots and streaks); their
PONIs apply to the frames flipped up-down. Nobody has labelled their spots, so this measures
what can be measured without labels, per frame and model:

- the share of valid pixels masked as spots;
- streak coverage: of the connected components the classical filter flags that are elongated
  (major axis ≥ 3x minor, ≥ 20 px), the share of their pixels the model masks;
- on the CeO2 frame, the spot probability of its ``--extreme`` brightest valid pixels and how
  many of them are masked (they sit hundreds of times above their ring's median).

Run from the repository root, e.g.::

    .venv/bin/python benchmarks/real_frames.py --model default light --out evaluation/real

One PNG per frame and model (frame with spots in red, zoom, 1D patterns: no mask, the model's
mask, the classical mask) and a table on stdout; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FRAMES = {  # frame file -> where its geometry is
    "CeO2_Pilatus1M.tif": "CeO2_Pilatus1M.poni",
    "Fe3O4C_M1_map_1_P1_E1_001.tif": "Fe3O4C_M1_map_1_P1_E1_001.xy",
    "Fe3O4C_M1_map_2_P1_E1_001.tif": "Fe3O4C_M1_map_2_P1_E1_001.xy",
}


def _geometry(name: str, shape: tuple[int, int]):
    from xrd_bluesky_mask.geometry import as_geometry
    from xrd_bluesky_mask.io import poni_from_xy_header

    source = REAL / FRAMES[name]
    poni = poni_from_xy_header(source)[0] if source.suffix == ".xy" else source
    return as_geometry(poni, shape)


def _elongated(spots: np.ndarray, min_px: int = 20, ratio: float = 3.0) -> np.ndarray:
    """The elongated connected components of ``spots`` (bool image)."""
    labels, n = ndimage.label(spots, structure=np.ones((3, 3)))
    out = np.zeros_like(spots)
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == k
        if comp.sum() < min_px:
            continue
        ys, xs = np.nonzero(comp)
        evals = np.linalg.eigvalsh(np.cov(np.vstack([xs, ys]).astype(float)))
        if evals[0] <= 0 or np.sqrt(evals[1] / evals[0]) >= ratio:
            out[sl] |= comp
    return out


def measure(model: str, out_dir: Path, n_extreme: int) -> list[dict]:
    """Mask every real frame with the U-Net ``model`` (and the classical filter), draw the
    overlays into ``out_dir`` and return one row of numbers per frame."""
    from xrd_bluesky_mask.apps.plotting import save_overlay
    from xrd_bluesky_mask.azimuthal import integrate
    from xrd_bluesky_mask.io import read_frame
    from xrd_bluesky_mask.masking import get_masker
    from xrd_bluesky_mask.pipeline import Pipeline

    unet = get_masker("unet", model=None if model == "default" else model)
    classical = get_masker("classical")
    rows = []
    for name in FRAMES:
        frame = np.flipud(read_frame(REAL / name))  # the PONIs apply to the flipped image
        geometry = _geometry(name, frame.shape)
        res = Pipeline(unet, geometry).process_frame(frame)
        cls = Pipeline(classical, geometry).process_frame(frame)
        valid = ~res.mask.static
        streaks = _elongated(cls.mask.spots & valid)
        row = {"frame": name, "model": unet.settings()["model_id"],
               "masked_pct": 100.0 * float(res.mask.spots[valid].mean()),
               "classical_masked_pct": 100.0 * float(cls.mask.spots[valid].mean()),
               "streak_px": int(streaks.sum()),
               "streak_covered": float(res.mask.spots[streaks].mean()) if streaks.any()
               else float("nan")}
        if name.startswith("CeO2") and res.mask.probability is not None:
            order = np.argsort(np.where(valid, frame, -np.inf), axis=None)[::-1][:n_extreme]
            row["extreme_p_max"] = float(res.mask.probability.ravel()[order].max())
            row["extreme_masked"] = int(res.mask.spots.ravel()[order].sum())
        raw = integrate(frame, geometry, mask=res.mask.static)
        png = save_overlay(
            out_dir / f"{Path(name).stem}_{row['model']}.png", frame, res.mask.spots,
            static=res.mask.static,
            patterns={"no mask": raw, f"{row['model']}": res.pattern,
                      "classical": cls.pattern},
            title=f"{name} (flipped up-down), {row['model']}: spots in red")
        row["png"] = str(png)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["default"],
                    help="models to compare: 'default', 'light', a folder or a registered id")
    ap.add_argument("--out", type=Path, default=Path("evaluation/real"), help="PNG folder")
    ap.add_argument("--extreme", type=int, default=8, help="brightest CeO2 pixels to check")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args()
    if not (REAL / "CeO2_Pilatus1M.tif").is_file():
        raise SystemExit(f"real frames not found in {REAL}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [r for m in args.model for r in measure(m, args.out, args.extreme)]
    print("| frame | model | spots % | classical % | streak px | streak covered | "
          "extreme P max | extreme masked |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['frame']} | {r['model']} | {r['masked_pct']:.3f} | "
              f"{r['classical_masked_pct']:.3f} | {r['streak_px']} | "
              f"{r['streak_covered']:.3f} | {r.get('extreme_p_max', float('nan')):.3f} | "
              f"{r.get('extreme_masked', '–')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
