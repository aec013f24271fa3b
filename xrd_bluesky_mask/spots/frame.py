"""A frame's tables as one hand-off (`FrameTables`), and a run's tables assembled in frame order.

Every path computes a frame's tables where it masks and integrates it
(`xrd_bluesky_mask.pipeline.process`), carries them with the frame's mask and pattern through
the journal to the sinks, and the sinks keep them keyed by frame: a frame written twice is one
set of rows. A run's tables (`run_tables`) are the frames' rows sorted by frame, with each
frame's ``similarity_to_previous`` computed from the stored float32 patterns of the frame and
the one before it (so the live path, a replay and reprocessing compute the same number from the
same rows, whatever order the frames arrived in).

Tables (names as stored in the derived container):

``spots``
    One row per spot (`table.COLUMNS`).
``frames``
    One row per frame (`summary.SUMMARY_COLUMNS`).
``texture``
    One row per ring of each frame (`summary.TEXTURE_COLUMNS`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..geometry import Geometry
from ..protocols import MaskResult
from .summary import SUMMARY_COLUMNS, TEXTURE_COLUMNS, _empty, frame_summary, ring_texture
from .summary import pattern_similarity as _similarity
from .table import COLUMNS, empty_spot_table, powder_level, spot_table

__all__ = ["TABLE_NAMES", "UNITS", "FrameTables", "frame_tables", "run_tables", "table_metadata",
           "tables_by_frame"]

#: The run's tables, as named in the derived container.
TABLE_NAMES = ("spots", "frames", "texture")
_PREFIX = "table_"
#: Units of every column of the tables ("" for a pure number).
UNITS: dict[str, str] = {
    "frame": "", "row_px": "px", "col_px": "px", "two_theta_deg": "deg", "chi_deg": "deg",
    "q_inv_angstrom": "1/angstrom", "area_px": "px", "peak_net_counts": "counts",
    "integrated_net_counts": "counts", "elongation": "", "orientation_deg": "deg",
    "mean_probability": "", "spot_count": "", "masked_pct": "%", "texture_index": "",
    "similarity_to_previous": "", "ring_level_counts": "counts",
}
_COLUMNS = {"spots": COLUMNS, "frames": SUMMARY_COLUMNS, "texture": TEXTURE_COLUMNS}
_INTEGER = {"frame", "area_px", "spot_count"}
_DESCRIPTION = {
    "spots": "one row per masked spot (8-connected component of the spot mask), intensities "
             "net of the local powder level",
    "frames": "one row per frame: spot count, masked share, texture index, similarity of the "
              "masked pattern to the previous frame's",
    "texture": "one row per ring of each frame: its level and texture index (coefficient of "
               "variation along chi with the spots removed)",
}


@dataclass(frozen=True)
class FrameTables:
    """What the mask found in one frame, as table rows.

    Attributes
    ----------
    spots
        The frame's spot table (`table.COLUMNS`), one row per spot.
    summary
        The frame's summary row (`summary.SUMMARY_COLUMNS`); ``similarity_to_previous`` is NaN
        here and filled in frame order by `run_tables`.
    texture
        One row per ring (`summary.TEXTURE_COLUMNS`).
    seconds
        Seconds the tables took to compute.
    """

    spots: pd.DataFrame
    summary: dict[str, float]
    texture: pd.DataFrame
    seconds: float = field(default=0.0, compare=False)

    def at(self, index: int) -> FrameTables:
        """The same rows with their ``frame`` column set to ``index``."""
        index = int(index)
        spots = self.spots.assign(frame=np.full(len(self.spots), index, np.int64))
        texture = self.texture.assign(frame=np.full(len(self.texture), index, np.int64))
        return replace(self, spots=spots, texture=texture,
                       summary={**self.summary, "frame": index})

    # -- as plain arrays (the journal's npz files) ------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The rows as named numpy arrays (no pickles): ``table_spots_<column>``,
        ``table_texture_<column>`` and ``table_summary`` (JSON bytes)."""
        out: dict[str, np.ndarray] = {}
        for name, df in (("spots", self.spots), ("texture", self.texture)):
            for column in df.columns:
                out[f"{_PREFIX}{name}_{column}"] = np.asarray(df[column].to_numpy())
        text = json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                           for k, v in self.summary.items()})
        out[f"{_PREFIX}summary"] = np.frombuffer(text.encode(), np.uint8)
        return out

    @staticmethod
    def from_arrays(arrays: Any) -> FrameTables | None:
        """The tables kept by `to_arrays` (``arrays``: a mapping or an open npz file), or None
        when they were not kept."""
        names = set(arrays.files if hasattr(arrays, "files") else arrays)
        if f"{_PREFIX}summary" not in names:
            return None
        tables = {}
        for name, columns in (("spots", COLUMNS), ("texture", TEXTURE_COLUMNS)):
            tables[name] = pd.DataFrame({c: arrays[f"{_PREFIX}{name}_{c}"] for c in columns},
                                        columns=list(columns))
        summary = json.loads(np.asarray(arrays[f"{_PREFIX}summary"]).tobytes())
        summary = {k: (float("nan") if v is None else v) for k, v in summary.items()}
        return FrameTables(tables["spots"], summary, tables["texture"])


def frame_tables(frame: np.ndarray, mask: MaskResult, geometry: Geometry, pattern: Any, *,
                 frame_index: int = 0) -> FrameTables:
    """The tables of one frame from its mask and masked pattern.

    Parameters
    ----------
    frame
        ``(rows, cols)`` counts as read (a leading axis of length 1 is dropped).
    mask
        The masker's `MaskResult` for it (``probability`` fills ``mean_probability``).
    geometry
        The frame's geometry.
    pattern
        The masked 1D pattern (``xarray.DataArray`` over ``two_theta``, degrees).
    frame_index
        The ``frame`` column (`FrameTables.at` sets it later).
    """
    t0 = time.perf_counter()
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    static = np.asarray(mask.static, bool)
    spots = np.asarray(mask.spots, bool) & ~static
    frame32 = a.astype(np.float32, copy=True)
    frame32[static | ~np.isfinite(frame32)] = 0.0
    level = powder_level(frame32, spots, static, geometry)
    table = spot_table(frame32, spots, static, geometry, frame_index=frame_index,
                       probability=mask.probability, level=level)
    texture = (ring_texture(pattern, level, frame_index=frame_index)
               if "two_theta" in pattern.coords else _empty(TEXTURE_COLUMNS))
    summary = frame_summary(frame_index, spots, static, len(table), texture)
    return FrameTables(table, summary, texture, time.perf_counter() - t0)


def table_metadata(name: str) -> dict[str, Any]:
    """Metadata of the stored table ``name`` (`TABLE_NAMES`): what a row is and the columns'
    units."""
    return {"description": _DESCRIPTION[name],
            "units": {c: UNITS[c] for c in _COLUMNS[name]}}


def _typed(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the stored columns and dtypes of table ``name`` (int64 counts, float64
    values), so every write of a table has one schema."""
    columns = _COLUMNS[name]
    return pd.DataFrame({c: np.asarray(df[c], np.int64 if c in _INTEGER else np.float64)
                         for c in columns}, columns=list(columns))


def _split(df: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """Rows of ``df`` by their ``frame``."""
    frame = np.asarray(df["frame"], np.int64)
    return {int(i): pd.DataFrame(df.loc[frame == i]) for i in np.unique(frame)}


def tables_by_frame(stored: Mapping[str, pd.DataFrame]) -> dict[int, FrameTables]:
    """Stored tables (``spots``, ``frames``, ``texture``, as read back) split into each
    frame's `FrameTables` (the inverse of `run_tables`)."""
    frames = stored["frames"]
    spots = stored.get("spots", empty_spot_table())
    texture = stored.get("texture", _empty(TEXTURE_COLUMNS))
    by_spot = _split(spots)
    by_ring = _split(texture)
    out = {}
    for row in frames.to_dict("records"):
        i = int(row["frame"])
        summary = {c: row[c] for c in SUMMARY_COLUMNS}
        summary.update(frame=i, spot_count=int(summary["spot_count"]),
                       similarity_to_previous=float("nan"))
        out[i] = FrameTables(_typed("spots", by_spot.get(i, empty_spot_table())), summary,
                             _typed("texture", by_ring.get(i, _empty(TEXTURE_COLUMNS))))
    return out


def run_tables(tables: Mapping[int, FrameTables],
               intensities: Mapping[int, np.ndarray] | None = None) -> dict[str, pd.DataFrame]:
    """A run's tables (`TABLE_NAMES`) from its frames' tables, sorted by frame.

    ``intensities`` maps frame index → the frame's stored masked pattern (float32 intensity,
    one value per bin); a frame's ``similarity_to_previous`` is `summary.pattern_similarity`
    of its pattern and frame ``index - 1``'s (NaN when either is not there)."""
    intensities = intensities or {}
    order = sorted(tables)
    rows = []
    for i in order:
        row = {**tables[i].summary, "frame": int(i)}
        row["similarity_to_previous"] = _similarity(intensities.get(i), intensities.get(i - 1))
        rows.append(row)
    frames = (pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)) if rows
              else _empty(SUMMARY_COLUMNS))
    spots = [tables[i].spots for i in order if len(tables[i].spots)]
    texture = [tables[i].texture for i in order if len(tables[i].texture)]
    return {
        "spots": _typed("spots", pd.concat(spots, ignore_index=True) if spots
                        else empty_spot_table()),
        "frames": _typed("frames", frames),
        "texture": _typed("texture", pd.concat(texture, ignore_index=True) if texture
                          else _empty(TEXTURE_COLUMNS)),
    }
