"""`xrd-mask predict`: mask detector image files and write masks and masked 1D patterns.

For every input ``NAME.ext`` it writes ``NAME_mask.tif`` (uint8: 0 = keep, 1 = spot,
2 = static: gaps, detector mask, flag/dummy values, NaN), ``NAME.xy`` (text) and ``NAME.nc``
(netCDF, xarray), and on request ``NAME_overlay.png`` and the mask for other tools
(`xrd_bluesky_mask.io.mask_files`: ``NAME_mask.edf``/``.npy`` for pyFAI, ``NAME.mask`` for
Dioptas). With a frame ``index`` (one frame of a stack) every name carries it:
``NAME_0003_mask.tif``, ``NAME_0003.xy``, ..., so a loop over the frames of a stack keeps every
frame's output. A file that fails writes nothing; failures are collected and reported together
at the end.

When the PONI applies to the image turned (``orientation``, e.g. flipped up-down for a Dioptas
PONI), the frame is turned before masking and integration, and the mask and overlay are turned
back: every image written has the input's orientation, and the ``.xy`` header and ``.nc``
attributes record the orientation and the geometry check (`check_geometry`), whose warning
(another orientation fits clearly better, the beam centre is off, no sharp rings at all) is
kept in `FileOutcome.warning` (and logged at INFO; the command summarises them).

When the check is decisive that another orientation fits (status ``"orientation"``),
``if_misoriented`` decides, so that a batch never keeps wrong masks silently: ``"refuse"``
(the default) writes nothing for that file and reports it as failed, naming the option that
fits; ``"apply"`` masks and integrates in the orientation that fits and records it in the
outputs, the table and the overlay; ``"keep"`` writes the outputs in the orientation asked,
with the warning on the overlay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..azimuthal import IntegrationSettings, integrate
from ..azimuthal.geometry_check import GeometryVerdict, check_geometry
from ..azimuthal.orientation import Orientation
from ..errors import GeometryError, XRDMaskError
from ..geometry import as_geometry
from ..io import (
    export_mask,
    read_frame,
    read_pixel_mask,
    write_mask_tiff,
    write_netcdf,
    write_xy,
)
from ..masking import Masker
from ..pipeline import process_frame
from ..pipeline.run_geometry import IF_MISORIENTED

log = logging.getLogger(__name__)


@dataclass
class FileOutcome:
    """What happened to one input file."""

    path: Path
    written: list[Path] = field(default_factory=list)
    spot_fraction: float = float("nan")
    static_fraction: float = float("nan")
    seconds: float = 0.0
    error: str | None = None
    verdict: GeometryVerdict | None = None
    #: The orientation the outputs were computed in (``None`` until the frame was read).
    orientation: Orientation | None = None
    #: Set when ``if_misoriented="apply"`` turned the frame another way than asked.
    applied_from: Orientation | None = None

    @property
    def warning(self) -> str | None:
        """The geometry check's warning for this file, or None."""
        return self.verdict.warning() if self.verdict is not None else None


def output_stem(path: str | Path, out_dir: Path, index: int | None = None) -> Path:
    """``out_dir/NAME`` for input ``NAME.ext``, ``out_dir/NAME_0003`` for frame 3 of a stack
    (the index as given: ``NAME_-001`` for the last frame)."""
    name = Path(path).stem
    return out_dir / (name if index is None else f"{name}_{index:04d}")


def predict_files(
    paths: list[Path],
    poni: str | Path,
    masker: Masker,
    out_dir: Path,
    *,
    settings: IntegrationSettings | None = None,
    png: bool = False,
    exports: Sequence[str] = (),
    flipud: bool = False,
    orientation: Orientation | str | None = None,
    check: bool = True,
    index: int | None = None,
    dataset: str | None = None,
    user_mask: np.ndarray | None = None,
    progress: bool = True,
    if_misoriented: str = "refuse",
) -> list[FileOutcome]:
    """Mask and integrate every file; never raises for one bad file (see `FileOutcome.error`).

    ``orientation`` (or ``flipud=True``, the same as ``orientation="flipud"``) turns each frame
    before the PONI applies; ``user_mask`` (True = exclude) is in the input's orientation, as
    the masks written are, so an earlier ``NAME_mask.tif`` can serve as one. An HDF5 file's own
    ``pixel_mask`` (a Dectris master file's, `xrd_bluesky_mask.io.read_pixel_mask`) is added to
    it, file by file.
    ``check`` runs `check_geometry` on every frame (about 0.2-0.5 s for 1 Mpx).
    ``exports``: mask formats for other tools (``"edf"``, ``"npy"``, ``"dioptas"``, see
    `xrd_bluesky_mask.io.mask_files`), also in the input's orientation.
    ``if_misoriented`` (one of `IF_MISORIENTED`): what happens to a file whose check finds
    that another orientation clearly fits (see the module's docstring); it needs ``check``.
    """
    from ..progress import progress as tqdm

    if if_misoriented not in IF_MISORIENTED:
        raise ValueError(f"if_misoriented must be one of {IF_MISORIENTED}, not "
                         f"{if_misoriented!r}")
    turn = Orientation.parse(orientation)
    if flipud:
        turn = Orientation(turn.transpose, not turn.flipud, turn.fliplr)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for path in tqdm(paths, desc="masking", unit="frame", disable=not progress):
        outcome = FileOutcome(Path(path))
        t0 = time.perf_counter()
        try:
            raw = read_frame(path, index=index, dataset=dataset)
            own = _file_static(path, raw.shape, user_mask)
            used = turn
            static_in = None if own is None else np.ascontiguousarray(used.apply(own))
            frame = np.ascontiguousarray(used.apply(raw))
            geometry = as_geometry(poni, frame.shape[-2:] if frame.ndim >= 2 else None)
            outcome.orientation = used
            if check:
                outcome.verdict = check_geometry(raw, geometry, orientation=used)
                better = outcome.verdict.better_orientation
                if better is not None and if_misoriented == "refuse":
                    raise GeometryError(
                        f"refused: {outcome.warning} Nothing was written for this file; "
                        "--if-misoriented apply masks it in the orientation that fits, keep "
                        "writes it as asked.")
                if better is not None and if_misoriented == "apply":
                    outcome.applied_from, used = used, better
                    frame = np.ascontiguousarray(used.apply(raw))
                    geometry = as_geometry(poni, frame.shape[-2:])
                    outcome.verdict = check_geometry(raw, geometry, orientation=used)
                    outcome.orientation = used
                    if own is not None:
                        static_in = np.ascontiguousarray(used.apply(own))
                    log.info("%s: orientation %r applied instead of %r (the geometry check's "
                             "rings are sharper)", path, used.name, turn.name)
                elif outcome.warning:
                    log.info("%s: %s", path, outcome.warning)
            res = process_frame(frame, geometry, masker, settings=settings,
                                extra_static=static_in, tables=png)
            stem = output_stem(path, out_dir, index)
            provenance = _provenance(used, outcome.verdict, outcome.applied_from)
            header = {"source": str(path), **masker.settings()}
            pattern = res.pattern.copy()
            pattern.attrs.update(provenance)
            if index is not None:
                pattern.attrs["frame_index"] = index
            outcome.written = [
                write_mask_tiff(f"{stem}_mask.tif", used.undo(res.mask.codes)),
                write_xy(f"{stem}.xy", pattern, header=header),
                write_netcdf(f"{stem}.nc", pattern),
            ]
            if exports:
                outcome.written += export_mask(stem, used.undo(res.mask.mask), exports)
            if png:
                from .plotting import save_overlay

                outcome.written.append(save_overlay(
                    f"{stem}_overlay.png", raw, used.undo(res.mask.spots),
                    static=used.undo(res.mask.static),
                    patterns={"raw (static pixels masked)": integrate(
                        frame, geometry, mask=res.mask.static, settings=settings),
                        "spots masked": res.pattern},
                    title=f"{stem.name}: {masker.name}, orientation {used.name}",
                    note=_overlay_note(outcome), rings=res.tables,
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


def _file_static(path: str | Path, shape: tuple[int, ...],
                 user_mask: np.ndarray | None) -> np.ndarray | None:
    """The pixels always excluded from ``path``'s frame, in the input's orientation: the user's
    mask, with the detector's own ``pixel_mask`` where an HDF5 file (a Dectris master file)
    holds one of the frame's shape; ``user_mask`` itself when the file holds none."""
    pixel_mask = read_pixel_mask(path)
    if pixel_mask is None:
        return user_mask
    if pixel_mask.shape != tuple(shape):
        log.warning("%s: its pixel_mask %s does not have the frame's shape %s; not used",
                    path, pixel_mask.shape, tuple(shape))
        return user_mask
    log.info("%s: %d pixels of the file's pixel_mask are static", path,
             int(np.count_nonzero(pixel_mask)))
    if user_mask is None:
        return pixel_mask
    if user_mask.shape != pixel_mask.shape:
        return user_mask  # masking reports the user mask's shape
    return pixel_mask | user_mask


def _overlay_note(outcome: FileOutcome) -> str | None:
    """The line the overlay shows in red: the orientation applied, or the check's warning."""
    if outcome.applied_from is not None and outcome.orientation is not None:
        return (f"orientation {outcome.orientation.name!r} applied instead of "
                f"{outcome.applied_from.name!r}: the geometry check's rings are sharper")
    return f"warning: {outcome.warning}" if outcome.warning else None


def _provenance(turn: Orientation, verdict: GeometryVerdict | None,
                applied_from: Orientation | None = None) -> dict[str, str | dict]:
    """What every output records about the orientation and the geometry check."""
    note = ("the PONI applies to the input image as given" if turn.is_identity else
            f"the PONI applies to the input image {turn.words}; the mask and overlay are "
            "turned back to the input's orientation")
    if applied_from is not None:
        note += f" (applied by the geometry check instead of {applied_from.name!r}, asked for)"
    found: dict[str, str | dict] = {"orientation": turn.name, "orientation_note": note}
    if verdict is not None:
        found["geometry_check"] = verdict.as_metadata()
    return found
