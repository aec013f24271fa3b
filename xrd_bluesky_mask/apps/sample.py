"""`xrd-mask sample`: write a simulated frame, its PONI and its true mask to try the masker on.

The frame is one of the simulator's labelled scenes (`xrd_bluesky_mask.simulate`): powder rings
with single-crystal spots, module gaps, a beamstop and dead and hot pixels, on a detector whose
PONI applies to the frame as written (no flip). Its true mask (the simulator's labels, in
`xrd-mask predict`'s codes) lets a user compare what the masker found with what is there.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write, write_mask_tiff

#: Scenes `write_sample` offers (the simulator's presets), the default first.
SAMPLE_SCENES = ("rings_spots", "spots_po", "spots_texture", "perfect")


@dataclass(frozen=True)
class SampleFiles:
    """What `write_sample` wrote."""

    #: The frame: float32 counts as a flat-panel detector reports them (TIFF).
    frame: Path
    #: Its pyFAI geometry (PONI 2.1), applying to the frame as written.
    poni: Path
    #: The true mask, uint8: 0 keep, 1 spot, 2 static (as ``xrd-mask predict`` writes masks).
    truth: Path
    #: Spot pixels of the truth, as a fraction of the pixels that are not static.
    spot_fraction: float

    def predict_command(self, out_dir: str | Path = "masks") -> str:
        """The ``xrd-mask predict`` line that masks the frame (outputs in ``out_dir``)."""
        return shlex.join(["xrd-mask", "predict", str(self.frame), "--poni", str(self.poni),
                           "--out", str(out_dir), "--png"])


def write_sample(out_dir: str | Path, *, scene: str = "rings_spots",
                 shape: tuple[int, int] = (1024, 1024), seed: int = 0) -> SampleFiles:
    """Simulate one frame and write it with its PONI and true mask into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to write into (created if missing); the files are ``sample_<scene>.tif``,
        ``sample_<scene>.poni`` and ``sample_<scene>_truth.tif``.
    scene
        One of `SAMPLE_SCENES`: ``rings_spots`` (smooth rings and spots), ``spots_po``
        (preferred orientation), ``spots_texture`` (grainy rings), ``perfect`` (no spots).
    shape
        Frame ``(rows, cols)`` in pixels: the scene's 2880 x 2880 detector of 150 µm pixels
        resampled (same area and 2θ range, larger pixels).
    seed
        Random seed; the same seed, scene and shape write identical files.

    Returns
    -------
    SampleFiles
        The paths written and the true spot fraction.
    """
    from ..errors import ConfigError
    from ..simulate import simulate_frame

    if scene not in SAMPLE_SCENES:
        raise ConfigError(f"unknown scene {scene!r}; choose one of {', '.join(SAMPLE_SCENES)}")
    rows, cols = (int(n) for n in shape)
    if min(rows, cols) < 256:
        raise ConfigError(f"a sample frame needs at least 256 x 256 pixels, not {rows} x {cols}")
    sim = simulate_frame(scene, seed=seed, shape=(rows, cols))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sample_{scene}"
    image = np.ascontiguousarray(sim.image, dtype=np.float32)

    def write_frame(tmp: Path) -> None:
        import tifffile

        tifffile.imwrite(tmp, image, photometric="minisblack", metadata=None,
                         description=f"xrd_bluesky_mask simulated frame: scene {scene}, "
                                     f"seed {seed}")

    frame = atomic_write(f"{stem}.tif", write_frame)
    poni_text = (f"# pyFAI geometry of {frame.name}, written by xrd-mask sample (simulated "
                 f"scene {scene}, seed {seed}).\n# It applies to the frame as written: no "
                 f"--flipud.\n{sim.geometry.poni_text.rstrip()}\n")

    def write_poni(tmp: Path) -> None:
        tmp.write_text(poni_text)

    poni = atomic_write(f"{stem}.poni", write_poni)
    codes = np.where(sim.static_mask, 2, np.where(sim.labels, 1, 0)).astype(np.uint8)
    truth = write_mask_tiff(f"{stem}_truth.tif", codes)
    valid = ~sim.static_mask
    fraction = float(sim.labels[valid].mean()) if valid.any() else 0.0
    return SampleFiles(frame=frame, poni=poni, truth=truth, spot_fraction=fraction)
