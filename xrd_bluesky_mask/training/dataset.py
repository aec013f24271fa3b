"""Training tiles: (input, label) windows cut with qlty, sorted by labelled fraction.

Spots are a rare class (often < 0.1 % of pixels); keeping every tile that holds spot pixels
and only a share of spot-free tiles keeps them from drowning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

IGNORE = -1  #: label of pixels that carry no label (static mask, padding)


@dataclass
class TileSet:
    """Training tiles.

    Attributes
    ----------
    x
        float16 ``(N, C, window, window)`` network input (half the memory of float32: a few
        thousand tiles of 256² are gigabytes; batches go to float32 on their way to the
        network, and the inputs' values, about -1 to 3, lose nothing that matters).
    y
        int8 ``(N, window, window)``: 0 = not a spot, 1 = spot, -1 = ignore (int8 keeps
        large tile sets small; the loss takes ``y.long()`` per batch).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def spot_fraction(self) -> torch.Tensor:
        """Labelled-spot fraction of each tile, ``(N,)``."""
        return (self.y == 1).float().mean(dim=(1, 2))

    def split(self, val_fraction: float, seed: int) -> tuple[TileSet, TileSet]:
        """Random train/validation split (validation gets ``val_fraction`` of the tiles)."""
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        n_val = max(1, int(round(val_fraction * len(self))))
        v, t = perm[:n_val], perm[n_val:]
        return TileSet(self.x[t], self.y[t]), TileSet(self.x[v], self.y[v])

    @staticmethod
    def concat(sets: Iterable[TileSet]) -> TileSet:
        """One TileSet from several."""
        sets = list(sets)
        return TileSet(torch.cat([s.x for s in sets]), torch.cat([s.y for s in sets]))


def tiles_from_pair(
    x: np.ndarray,
    labels: np.ndarray,
    static: np.ndarray,
    *,
    window: int = 256,
    step: int = 256,
    negative_keep: float = 0.3,
    rng: np.random.Generator | None = None,
) -> TileSet:
    """Cut one frame's input ``(C, rows, cols)`` and bool labels ``(rows, cols)`` into tiles.

    Tiles with spot pixels are all kept, sorted by labelled fraction (most first); of the
    spot-free tiles a random ``negative_keep`` share is kept (hard negatives such as
    preferred-orientation bands live there). Static pixels are labelled `IGNORE`.
    """
    from qlty.qlty2D import NCYXQuilt

    rng = rng or np.random.default_rng(0)
    rows, cols = labels.shape
    if rows < window or cols < window:
        raise ValueError(f"frame {labels.shape} is smaller than the training window {window}")
    y = labels.astype(np.int64)
    y[static] = IGNORE
    quilt = NCYXQuilt(rows, cols, window=(window, window), step=(step, step), border=None)
    # three tensors only with return_positions=True
    xt, yt = cast(tuple[torch.Tensor, torch.Tensor],
                  quilt.unstitch_data_pair(torch.from_numpy(x[None]), torch.from_numpy(y[None])))
    yt = yt[:, 0].long() if yt.ndim == 4 else yt.long()
    frac = (yt == 1).float().mean(dim=(1, 2))
    known = (yt != IGNORE).float().mean(dim=(1, 2))
    positive = torch.nonzero(frac > 0).flatten()
    positive = positive[torch.argsort(frac[positive], descending=True)]
    negative = torch.nonzero((frac == 0) & (known > 0.5)).flatten().numpy()
    n_keep = int(np.ceil(negative_keep * len(negative)))
    negative = torch.from_numpy(rng.permutation(negative)[:n_keep])
    keep = torch.cat([positive, negative])
    return TileSet(xt[keep].to(torch.float16).contiguous(),
                   yt[keep].to(torch.int8).contiguous())
