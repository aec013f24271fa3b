"""Pictures a person would rather look at than read: mask overlays and 1D patterns."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from ..io.outputs import atomic_write

SPOT_RGBA = (1.0, 0.1, 0.1, 0.85)
STATIC_RGBA = (0.3, 0.5, 1.0, 0.5)


def _busiest_window(mask: np.ndarray, size: int) -> tuple[slice, slice]:
    """The ``size`` px square holding the most masked pixels (for a zoomed view)."""
    rows, cols = mask.shape
    size = min(size, rows, cols)
    step = max(size // 2, 1)
    best, where = -1, (0, 0)
    for r in range(0, max(rows - size, 0) + 1, step):
        for c in range(0, max(cols - size, 0) + 1, step):
            n = int(np.count_nonzero(mask[r : r + size, c : c + size]))
            if n > best:
                best, where = n, (r, c)
    return slice(where[0], where[0] + size), slice(where[1], where[1] + size)


def _show(ax, frame: np.ndarray, spots: np.ndarray, static: np.ndarray | None, title: str):
    valid = frame[np.isfinite(frame) & (frame > 0)]
    lo, hi = np.percentile(valid, [1, 99.7]) if valid.size else (0, 1)
    img = np.log10(np.clip(np.nan_to_num(frame), max(lo, 1e-3), max(hi, lo * 10 + 1e-3)))
    ax.imshow(img, cmap="gray", interpolation="nearest")
    over = np.zeros((*spots.shape, 4), dtype=np.float32)
    if static is not None:
        over[static] = STATIC_RGBA
    over[spots] = SPOT_RGBA
    ax.imshow(over, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save_overlay(
    path: str | Path,
    frame: np.ndarray,
    spots: np.ndarray,
    *,
    static: np.ndarray | None = None,
    patterns: Mapping[str, xr.DataArray] | None = None,
    title: str = "",
    zoom_px: int = 256,
    note: str | None = None,
) -> Path:
    """Write a PNG: the frame with spots (red) and static pixels (blue), a zoom on the busiest
    region, and the 1D patterns (e.g. raw vs masked vs classical) against 2θ (degrees).

    ``note`` (e.g. the geometry check's warning) is printed under the title, both in red.
    The file is written to a temporary and renamed (`atomic_write`), so a failure leaves no
    half-written PNG, with the permissions of the other outputs (0644 under the usual umask).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    ncols = 3 if patterns else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 5.6), constrained_layout=True)
    valid = np.ones(spots.shape, bool) if static is None else ~np.asarray(static, bool)
    pct = 100.0 * np.count_nonzero(spots & valid) / max(np.count_nonzero(valid), 1)
    _show(axes[0], frame, spots, static,
          f"frame, spots masked: {pct:.3f} % of the non-static pixels")
    rs, cs = _busiest_window(spots, zoom_px)
    _show(
        axes[1], frame[rs, cs], spots[rs, cs], None if static is None else static[rs, cs],
        f"zoom: rows {rs.start}-{rs.stop}, cols {cs.start}-{cs.stop}",
    )
    if patterns:
        ax = axes[2]
        for label, pat in patterns.items():
            ax.plot(pat["two_theta"].values, pat.values, lw=0.8, label=label)
        ax.set_xlabel("2θ (deg)")
        ax.set_ylabel("intensity (counts, azimuthal mean)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("1D patterns", fontsize=9)
    if note:
        import textwrap

        fig.suptitle("\n".join([title, textwrap.fill(note, 40 * ncols)]).strip(),
                     fontsize=10, color="red")
    elif title:
        fig.suptitle(title, fontsize=10)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path
