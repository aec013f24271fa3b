"""Inference strategies: how a frame is cut, run through the network and put back.

Both predictors are called as ``predictor(x, net) -> logits`` with ``x`` float32 torch
``(1, C, rows, cols)`` on the network's device and logits ``(1, classes, rows, cols)`` on the
same device, and record per-stage seconds in ``self.timings``.

- `QuiltPredictor`: the paper's method. qlty cuts overlapping windows (256x256 by default),
  the network runs on batches of windows, and qlty stitches the logits back with the
  window borders weighted ~0 (ignored) except where only a border covers a pixel (the edges).
- `HaloPredictor`: the network is fully convolutional, so large tiles with a halo of context
  (cropped after the pass) give the whole-frame answer at a fraction of the cost of windows.
  With a `CandidateRule` it runs the network only where spots can be: on the part of each tile
  whose blocks hold candidate pixels (a strong excess over the pixel's 2θ ring, from the
  network's own ``ring_excess`` input channel), and calls the rest "no spot".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import torch


def _pad_to(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    import torch.nn.functional as F

    pr, pc = rows - x.shape[-2], cols - x.shape[-1]
    if pr <= 0 and pc <= 0:
        return x
    mode = "reflect" if pr < x.shape[-2] and pc < x.shape[-1] else "replicate"
    return F.pad(x, (0, max(pc, 0), 0, max(pr, 0)), mode=mode)


class QuiltPredictor:
    """qlty windows: ``window`` px squares every ``step`` px, ``border`` px ignored when stitching.

    The frame is padded by ``border`` px (reflect) before cutting, and frames smaller than a
    window up to one window, then cropped back. Without that padding, pixels in the frame's
    own edge strips lie in the ignored border of every window that covers them, and qlty
    averages them over windows that see them at a window edge.
    """

    def __init__(
        self, window: int = 256, step: int = 192, border: int = 32, batch_size: int = 16
    ) -> None:
        if not 0 <= 2 * border < window:
            raise ValueError(f"border must be in [0, window/2), got {border} for window {window}")
        if not 0 < step <= window:
            raise ValueError(f"step must be in (0, window], got {step} for window {window}")
        self.window, self.step, self.border, self.batch_size = window, step, border, batch_size
        self.timings: dict[str, float] = {}

    def settings(self) -> dict:
        """Tiling settings, px."""
        return {"kind": "quilt", "window": self.window, "step": self.step, "border": self.border}

    def __call__(self, x: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
        """Logits ``(1, classes, rows, cols)`` for input ``x`` ``(1, C, rows, cols)``."""
        import torch
        import torch.nn.functional as F
        from qlty.qlty2D import NCYXQuilt

        rows, cols = x.shape[-2:]
        b = self.border
        t0 = time.perf_counter()
        xp = F.pad(x, (b, b, b, b), mode="reflect" if b < min(rows, cols) else "replicate")
        xp = _pad_to(xp, max(rows + 2 * b, self.window), max(cols + 2 * b, self.window))
        quilt = NCYXQuilt(
            xp.shape[-2],
            xp.shape[-1],
            window=(self.window, self.window),
            step=(self.step, self.step),
            border=self.border or None,
            border_weight=0.0,
        )
        # a tuple only with return_positions=True
        patches = cast("torch.Tensor", quilt.unstitch(xp.cpu()))
        t1 = time.perf_counter()
        outs = []
        for i in range(0, patches.shape[0], self.batch_size):
            batch = patches[i : i + self.batch_size].to(x.device)
            batch = batch.contiguous(memory_format=torch.channels_last)
            outs.append(net(batch).float().cpu())
        logits = torch.cat(outs)
        t2 = time.perf_counter()
        stitched, _ = quilt.stitch(logits, use_numba=False)
        t3 = time.perf_counter()
        self.timings = {"tile": t1 - t0, "network": t2 - t1, "stitch": t3 - t2}
        return stitched[..., b : b + rows, b : b + cols].to(x.device)


#: Logit given to the classes other than "no spot" where the network did not run.
SKIPPED_LOGIT = -1e4


@dataclass(frozen=True)
class CandidateRule:
    """Which pixels could be a spot, from the ``ring_excess`` input channel (``asinh(z/2)/3``
    of the excess z over the ring median in robust standard deviations).

    A pixel is a candidate when its own z is at least ``pixel_z`` (one bright pixel) or the
    mean z of the 5x5 pixels around it is at least ``mean_z`` (a faint spot of a few pixels;
    for pure noise that mean has a standard deviation of 0.2). A block of ``block`` px is
    active when a candidate lies within ``reach`` px of it; the network runs on the bounding
    box of the active blocks of each tile, with the tile's halo.
    """

    pixel_z: float = 8.0
    mean_z: float = 1.0
    block: int = 128
    reach: int = 16
    channel: int = 1

    def settings(self) -> dict:
        """The rule's numbers (provenance)."""
        return {"pixel_z": self.pixel_z, "mean_z": self.mean_z, "block_px": self.block,
                "reach_px": self.reach}

    def active_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """bool ``(batch, ceil(rows/block), ceil(cols/block))``: blocks holding candidates
        (within ``reach``) for input ``x`` ``(batch, C, rows, cols)``."""
        import torch
        import torch.nn.functional as F

        c = x[:, self.channel : self.channel + 1].float()
        z = torch.sinh(c * 3.0) * 2.0
        cand = (z >= self.pixel_z) | (F.avg_pool2d(z, 5, stride=1, padding=2,
                                                  count_include_pad=False) >= self.mean_z)
        b, r = self.block, self.reach
        rows, cols = x.shape[-2:]
        pad = (r, b * math.ceil(cols / b) - cols + r, r, b * math.ceil(rows / b) - rows + r)
        grid = F.max_pool2d(F.pad(cand.to(torch.float32), pad), b + 2 * r, stride=b)
        return grid[:, 0] > 0


class HaloPredictor:
    """Whole-frame inference in ``tile`` px pieces, each with ``halo`` px of context.

    With ``halo`` at least the network's receptive radius this equals one pass over the whole
    frame; ``tile=None`` runs the frame in one piece (fastest, most memory).
    """

    def __init__(self, tile: int | None = 768, halo: int = 64, multiple: int = 8,
                 candidates: CandidateRule | None = None) -> None:
        self.tile, self.halo, self.multiple = tile, halo, multiple
        self.candidates = candidates
        self.timings: dict[str, float] = {}
        #: share of the frame's pixels the network ran on in the last call (1.0 = all)
        self.coverage = 1.0

    def settings(self) -> dict:
        """Tiling settings, px (and the candidate rule, when there is one)."""
        out: dict = {"kind": "halo", "tile": self.tile, "halo": self.halo}
        if self.candidates is not None:
            out["candidates"] = self.candidates.settings()
        return out

    def _window(self, active: torch.Tensor | None, r0: int, r1: int, c0: int,
                c1: int) -> tuple[int, int, int, int] | None:
        """The part of tile ``[r0:r1, c0:c1]`` to run: all of it, the bounding box of its
        active blocks (over the batch), or None (no candidate)."""
        rule = self.candidates
        if active is None or rule is None:  # active blocks come only from a rule
            return r0, r1, c0, c1
        import torch

        b = rule.block
        sub = active[:, r0 // b : -(-r1 // b), c0 // b : -(-c1 // b)].any(0)
        if not bool(sub.any()):
            return None
        rows = torch.nonzero(sub.any(1)).flatten()
        cols = torch.nonzero(sub.any(0)).flatten()
        top, left = r0 // b + int(rows[0]), c0 // b + int(cols[0])
        bottom, right = r0 // b + int(rows[-1]) + 1, c0 // b + int(cols[-1]) + 1
        return max(top * b, r0), min(bottom * b, r1), max(left * b, c0), min(right * b, c1)

    def _run(self, x: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
        import torch

        m = self.multiple
        rows, cols = x.shape[-2:]
        up = lambda n: -(-n // m) * m  # noqa: E731
        xp = _pad_to(x, up(max(rows, m)), up(max(cols, m)))
        # channels-last runs oneDNN's faster convolutions (about 1.8x on CPU here)
        return net(xp.contiguous(memory_format=torch.channels_last))[..., :rows, :cols]

    def __call__(self, x: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
        """Logits ``(batch, classes, rows, cols)`` for input ``x`` ``(batch, C, rows, cols)``;
        with a candidate rule, `SKIPPED_LOGIT` for the spot classes where the network did not
        run (probability ~0)."""
        import torch

        t0 = time.perf_counter()
        rows, cols = x.shape[-2:]
        active = self.candidates.active_blocks(x) if self.candidates is not None else None
        t = self.tile if self.tile is not None else max(rows, cols)
        h = self.halo
        out, ran = None, 0
        for r0 in range(0, rows, t):
            for c0 in range(0, cols, t):
                window = self._window(active, r0, min(r0 + t, rows), c0, min(c0 + t, cols))
                if window is None:
                    continue
                w0, w1, v0, v1 = window
                a0, b0 = max(w0 - h, 0), max(v0 - h, 0)
                a1, b1 = min(w1 + h, rows), min(v1 + h, cols)
                piece = self._run(x[..., a0:a1, b0:b1], net).float()
                if out is None:
                    out = torch.empty((x.shape[0], piece.shape[1], rows, cols),
                                      dtype=piece.dtype, device=x.device)
                    if active is not None:  # "no spot" wherever the network does not run
                        out[:, :1] = 0.0
                        out[:, 1:] = SKIPPED_LOGIT
                out[..., w0:w1, v0:v1] = piece[..., w0 - a0 : w1 - a0, v0 - b0 : v1 - b0]
                ran += (w1 - w0) * (v1 - v0)
        if out is None:  # no candidate anywhere: the network never ran
            with torch.no_grad():
                classes = int(self._run(x[..., :self.multiple, :self.multiple], net).shape[1])
            out = torch.full((x.shape[0], classes, rows, cols), SKIPPED_LOGIT,
                             dtype=torch.float32, device=x.device)
            out[:, :1] = 0.0
        self.coverage = ran / float(rows * cols)
        self.timings = {"tile": 0.0, "network": time.perf_counter() - t0, "stitch": 0.0}
        return out
