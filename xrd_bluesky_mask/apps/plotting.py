"""Pictures a person would rather look at than read: mask overlays, 1D patterns, and what the
spot tables say (spot count, masked share, texture index) against frame or per ring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..io.outputs import atomic_write

if TYPE_CHECKING:
    from ..spots import FrameTables

SPOT_RGBA = (1.0, 0.1, 0.1, 0.85)
STATIC_RGBA = (0.3, 0.5, 1.0, 0.5)
#: The frame summary's columns drawn against frame, with their axis labels.
PANELS = (("spot_count", "spots"), ("masked_pct", "masked (%)"),
          ("texture_index", "texture index"))


def draw_frame_panels(axes: Any, runs: Mapping[str, Any]) -> None:
    """Spot count, masked share (% of the non-static pixels) and texture index against frame
    on three ``axes`` (cleared), one line per run; the last run of ``runs`` (label -> its
    frame summary rows: a ``frames`` table or a list of row dicts) in colour, the others grey."""
    import pandas as pd

    labels = list(runs)
    for ax, (column, label) in zip(axes, PANELS, strict=True):
        ax.clear()
        for k, name in enumerate(labels):
            df = pd.DataFrame(list(runs[name]) if not isinstance(runs[name], pd.DataFrame)
                              else runs[name])
            if df.empty or column not in df:
                continue
            df = df.sort_values("frame")
            last = k == len(labels) - 1
            ax.plot(df["frame"].to_numpy(), df[column].to_numpy(dtype=float), "o-", ms=3,
                    lw=1.2 if last else 0.8, color=None if last else "0.7",
                    label=f"run {name}")
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_title("per frame, as the results are written", fontsize=9)
    axes[-1].set_xlabel("frame")
    if axes[0].get_lines():
        axes[0].legend(fontsize=7, loc="best")


def draw_ring_panels(axes: Any, tables: FrameTables, two_theta_edges: Iterable[float]) -> None:
    """One frame, per ring: spots per 2θ bin (of ``two_theta_edges``, degrees) and each ring's
    texture index, on two ``axes`` (cleared), with the frame's totals in the title."""
    spots, texture, row = tables.spots, tables.texture, tables.summary
    edges = np.asarray(list(two_theta_edges), float)
    counts, _ = np.histogram(spots["two_theta_deg"].to_numpy(float), bins=edges)
    top, bottom = axes
    top.clear()
    bottom.clear()
    top.stairs(counts, edges, fill=True, alpha=0.6, color="tab:red")
    top.set_ylabel("spots per bin", fontsize=8)
    top.set_title(f"{int(row.get('spot_count', 0))} spots, "
                  f"{float(row.get('masked_pct', np.nan)):.3f} % masked, "
                  f"texture index {float(row.get('texture_index', np.nan)):.3f}", fontsize=9)
    bottom.stem(texture["two_theta_deg"].to_numpy(float),
                texture["texture_index"].to_numpy(float), basefmt=" ")
    bottom.set_ylabel("texture index", fontsize=8)
    bottom.set_xlabel("2θ (deg), rings of the masked pattern")
    bottom.set_xlim(edges[0], edges[-1])
    for ax in axes:
        ax.tick_params(labelsize=7)


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
    summary: Mapping[str, Any] | None = None,
    rings: FrameTables | None = None,
) -> Path:
    """Write a PNG: the frame with spots (red) and static pixels (blue), a zoom on the busiest
    region, and the 1D patterns (e.g. raw vs masked vs classical) against 2θ (degrees).

    ``note`` (e.g. the geometry check's warning) is printed under the title, both in red.
    ``summary`` (run label -> its ``frames`` table) adds a column of spot count, masked share
    and texture index against frame (`draw_frame_panels`); ``rings`` (one frame's tables) adds
    spots and texture index per ring (`draw_ring_panels`).
    The file is written to a temporary and renamed (`atomic_write`), so a failure leaves no
    half-written PNG, with the permissions of the other outputs (0644 under the usual umask).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    ncols = 3 if patterns else 2
    extra = summary is not None or rings is not None
    fig = plt.figure(figsize=(6 * (ncols + extra), 5.6), constrained_layout=True)
    grid = fig.add_gridspec(len(PANELS), ncols + extra)
    axes = [fig.add_subplot(grid[:, k]) for k in range(ncols)]
    if summary is not None:
        first = fig.add_subplot(grid[0, ncols])
        panels = [first] + [fig.add_subplot(grid[k, ncols], sharex=first)
                            for k in range(1, len(PANELS))]
        draw_frame_panels(panels, summary)
    elif rings is not None:
        top = fig.add_subplot(grid[:2, ncols])
        bottom = fig.add_subplot(grid[2, ncols], sharex=top)
        tth = (np.asarray(next(iter(patterns.values()))["two_theta"].values, float)
               if patterns else np.zeros(0))
        lo, hi = (float(tth.min()), float(tth.max())) if tth.size else (0.0, 90.0)
        draw_ring_panels([top, bottom], rings, np.linspace(lo, hi, 61))
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
