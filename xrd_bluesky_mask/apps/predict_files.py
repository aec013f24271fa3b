"""`xrd-mask predict`: mask detector image files and write masks and masked 1D patterns.

For every input ``NAME.ext`` it writes ``NAME_mask.tif`` (uint8: 0 = keep, 1 = spot,
2 = static: gaps, detector mask, flag/dummy values, NaN), ``NAME.xy`` (text) and ``NAME.nc``
(netCDF, xarray), and ``NAME_overlay.png`` on request. A file that fails writes nothing;
failures are collected and reported together at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XRDMaskError
from ..geometry import as_geometry
from ..integration import IntegrationSettings
from ..io import read_frame, write_mask_tiff, write_netcdf, write_xy
from ..masking import Masker
from ..pipeline import process_frame


@dataclass
class FileOutcome:
    """What happened to one input file."""

    path: Path
    written: list[Path] = field(default_factory=list)
    spot_fraction: float = float("nan")
    static_fraction: float = float("nan")
    seconds: float = 0.0
    error: str | None = None


def predict_files(
    paths: list[Path],
    poni: str | Path,
    masker: Masker,
    out_dir: Path,
    *,
    settings: IntegrationSettings | None = None,
    png: bool = False,
    flipud: bool = False,
    index: int | None = None,
    dataset: str | None = None,
    user_mask: np.ndarray | None = None,
    progress: bool = True,
) -> list[FileOutcome]:
    """Mask and integrate every file; never raises for one bad file (see `FileOutcome.error`)."""
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for path in tqdm(paths, desc="masking", unit="frame", disable=not progress):
        outcome = FileOutcome(Path(path))
        t0 = time.perf_counter()
        try:
            frame = read_frame(path, index=index, dataset=dataset)
            if flipud:
                frame = np.flipud(frame)
            geometry = as_geometry(poni, frame.shape[-2:] if frame.ndim >= 2 else None)
            res = process_frame(frame, geometry, masker, settings=settings,
                                extra_static=user_mask)
            stem = out_dir / Path(path).stem
            header = {"source": str(path), **masker.settings()}
            outcome.written = [
                write_mask_tiff(f"{stem}_mask.tif", res.mask.codes),
                write_xy(f"{stem}.xy", res.pattern, header=header),
                write_netcdf(f"{stem}.nc", res.pattern),
            ]
            if png:
                from .plotting import save_overlay

                outcome.written.append(save_overlay(
                    f"{stem}_overlay.png", frame, res.mask.spots, static=res.mask.static,
                    patterns={"masked": res.pattern}, title=f"{Path(path).name}: {masker.name}",
                ))
            outcome.spot_fraction = res.mask.spot_fraction
            outcome.static_fraction = float(res.mask.static.mean())
        except (XRDMaskError, ValueError, OSError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            for p in outcome.written:
                Path(p).unlink(missing_ok=True)
            outcome.written = []
        outcome.seconds = time.perf_counter() - t0
        outcomes.append(outcome)
    return outcomes
