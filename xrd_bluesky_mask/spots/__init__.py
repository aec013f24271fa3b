"""Spots as data: what the mask found in each frame, as tables a scientist plots.

`table.spot_table`: one row per masked spot (position in px, 2θ, χ, q, area, net intensities
above the local powder level, shape, network probability). `summary`: one row per frame (spot
count, masked share, texture index, similarity to the previous frame) and the texture of each
ring. `frame`: a frame's tables as one hand-off (`FrameTables`) and a run's in frame order
(`run_tables`).
"""

from .frame import (
    TABLE_NAMES,
    UNITS,
    FrameTables,
    frame_tables,
    run_tables,
    table_metadata,
    tables_by_frame,
)
from .summary import (
    SUMMARY_COLUMNS,
    TEXTURE_COLUMNS,
    frame_summary,
    pattern_similarity,
    ring_texture,
)
from .table import COLUMNS, PowderLevel, empty_spot_table, powder_level, spot_table

__all__ = [
    "COLUMNS",
    "TABLE_NAMES",
    "UNITS",
    "FrameTables",
    "frame_tables",
    "run_tables",
    "SUMMARY_COLUMNS",
    "TEXTURE_COLUMNS",
    "PowderLevel",
    "empty_spot_table",
    "frame_summary",
    "pattern_similarity",
    "powder_level",
    "ring_texture",
    "spot_table",
    "table_metadata",
    "tables_by_frame",
]
