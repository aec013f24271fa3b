"""Training data from image + mask files (e.g. frames whose masks a person checked)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import FrameError
from ..geometry import as_geometry
from ..io import read_frame
from ..masking.preprocess import network_input, prepare_frame
from ..models.card import InputSpec
from .dataset import TileSet, tiles_from_pair


def tiles_from_files(
    images: Sequence[str | Path],
    masks: Sequence[str | Path],
    poni: str | Path,
    *,
    window: int = 256,
    negative_keep: float = 0.3,
    seed: int = 0,
    spec: InputSpec | None = None,
) -> TileSet:
    """Tiles from frames and their label masks (one mask file per frame, same order);
    ``spec``: the network input (ring widths; the model card's ``input``).

    Mask files use the codes `xrd-mask predict` writes: 0 = not a spot, 1 = spot, 2 (or any
    other non-zero value) = static, carrying no label. Shapes must match frame by frame.
    """
    if len(images) != len(masks):
        raise FrameError(f"{len(images)} images but {len(masks)} masks; pair them one to one")
    rng = np.random.default_rng(seed)
    sets = []
    for img, msk in zip(images, masks, strict=True):
        frame = read_frame(img)
        codes = read_frame(msk)
        if codes.shape != frame.shape:
            raise FrameError(
                f"mask {msk} has shape {codes.shape} but frame {img} has {frame.shape}; "
                "a label mask must match its frame pixel for pixel"
            )
        geometry = as_geometry(poni, frame.shape)
        f32, static = prepare_frame(frame, geometry)
        labels = codes == 1
        ignore = static | ((codes != 0) & (codes != 1))
        x = network_input(f32, static, geometry, spec)
        sets.append(tiles_from_pair(x, labels, ignore, window=window, step=window,
                                    negative_keep=negative_keep, rng=rng))
    return TileSet.concat(sets)
