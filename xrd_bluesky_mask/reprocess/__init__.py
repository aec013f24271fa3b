"""Post-hoc reprocessing of stored frame series, resumable, in this process or on Dask.

`reprocess(client, sources, ...)` masks and integrates Bluesky runs (by uid, BlueskyRun or Tiled
query) and frame-series array nodes again, into versioned Tiled results: same settings resume,
new settings add a version. Modules: `sources` (what to read), `plan` (what is left to do),
`local` (in-process `Worker`), `cluster` (Dask distributed), `summary` (the table).
"""

from __future__ import annotations

from .driver import reprocess
from .sources import AllOf, parse_query
from .summary import ReprocessSummary, RunSummary

__all__ = ["AllOf", "ReprocessSummary", "RunSummary", "parse_query", "reprocess"]
