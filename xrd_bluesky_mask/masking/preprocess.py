"""Frame checks and the network's input channels.

`prepare_frame` turns any real-valued detector frame into float32 counts plus the static
mask (invalid whatever the frame shows); `network_input` builds the scale-free channels the
U-Net sees: a log-scaled frame and each pixel's excess over its own 2θ ring.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import FrameError
from ..geometry import Geometry
from .rings import RingStats, ring_stats

log = logging.getLogger(__name__)

#: Input channels, in order; stored in model cards so a model and its input stay matched.
CHANNELS = ("log_frame", "ring_excess")
NORMALISATION_VERSION = 1


class NonFiniteWarning(UserWarning):
    """A frame held NaN or infinite pixels; they were masked."""


def prepare_frame(
    frame: np.ndarray, geometry: Geometry, *, extra_static: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check a frame and split it into float32 counts and the static mask.

    Parameters
    ----------
    frame
        ``(rows, cols)`` detector frame (any real dtype); a leading axis of length 1 is dropped.
    geometry
        Geometry whose detector shape the frame must have.
    extra_static
        bool ``(rows, cols)`` user mask (beamstop, known bad pixels), True = exclude.

    Returns
    -------
    frame32, static
        float32 counts with static pixels set to 0, and the bool static mask: detector mask,
        negative/dummy values, NaN/inf (with a `NonFiniteWarning`) and ``extra_static``.
    """
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise FrameError(
            f"expected one 2D frame (rows, cols), got an array of shape {a.shape}. "
            "Pass a single frame; for a stack, select one frame (e.g. stack[i])."
        )
    if a.size == 0:
        raise FrameError("the frame is empty (0 pixels); check the file or the detector read-out")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
        raise FrameError(f"frame dtype {a.dtype} is not a real number type")
    geometry.check_frame(a.shape)
    f = a.astype(np.float32, copy=True)
    finite = np.isfinite(f)
    static = ~finite | geometry.detector_mask()
    if not finite.all():
        n = int((~finite).sum())
        warnings.warn(
            f"{n} pixels are NaN or infinite; they are masked (static mask).",
            NonFiniteWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore"):
        static |= ~(f >= 0)
    if extra_static is not None:
        if extra_static.shape != f.shape:
            raise FrameError(
                f"user mask shape {extra_static.shape} differs from frame shape {f.shape}"
            )
        static |= extra_static.astype(bool)
    f[static] = 0.0
    if not np.any(f):
        raise FrameError(
            "every valid pixel of the frame is zero: nothing to mask. Check that the shutter "
            "was open and the detector read out (dark or empty frame)."
        )
    return f, static


def network_input(
    frame32: np.ndarray,
    static: np.ndarray,
    geometry: Geometry,
    *,
    stats: RingStats | None = None,
    max_per_bin: int | None = 256,
) -> np.ndarray:
    """The U-Net's input, float32 ``(2, rows, cols)``; static pixels are 0 in both channels.

    Channel 0 (``log_frame``) is ``log1p(frame / level)`` with ``level`` the frame's median
    valid pixel, so frames whose flux differs by orders of magnitude look alike. Channel 1
    (``ring_excess``) is the pixel's excess over the median of its 2θ ring in robust
    standard deviations, compressed with ``asinh(z / 2) / 3``: spots are local positive
    excursions whatever the flux or geometry, preferred orientation a smooth modulation along χ.
    """
    import torch

    valid = ~static
    if stats is None:
        stats = ring_stats(frame32, valid, geometry, max_per_bin=max_per_bin)
    step = max(1, frame32.size // 65536)
    flat, ok = frame32.ravel()[::step], valid.ravel()[::step]
    sample = flat[ok]
    level = float(np.median(sample)) if sample.size else 1.0
    if level <= 0:
        positive = sample[sample > 0]
        level = float(np.median(positive)) if positive.size else 1.0
    # elementwise work in torch: 5-10x faster than numpy's log1p/arcsinh on 8 Mpx
    f = torch.from_numpy(frame32).reshape(-1)
    out = torch.empty((2, frame32.size), dtype=torch.float32)
    torch.log1p(f / level, out=out[0])
    out[0] *= 0.5
    idx = stats.bins.index_tensor
    med = torch.from_numpy(np.nan_to_num(stats.median, nan=0.0))
    sig = torch.from_numpy(np.nan_to_num(stats.sigma, nan=1.0))
    z = (f - med[idx]) / sig[idx]
    # asinh(z/2)/3 as log(a + sqrt(a² + 1)) with the sign restored: torch.asinh is slow on CPU
    a = z.abs_().mul_(0.5)
    torch.log(a + torch.sqrt(a * a + 1.0), out=out[1])
    out[1] *= (f >= med[idx]).float().mul_(2.0 / 3.0).sub_(1.0 / 3.0)
    out.masked_fill_(torch.from_numpy(static).reshape(1, -1), 0.0)
    return out.reshape(2, *frame32.shape).numpy()

