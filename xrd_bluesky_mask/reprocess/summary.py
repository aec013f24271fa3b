"""What `reprocess` did: one `RunSummary` per source and a printable table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ReprocessSummary", "RunSummary"]


@dataclass
class RunSummary:
    """The outcome for one source.

    Attributes
    ----------
    source_id, kind, label
        The source (`Source.source_id`, ``"bluesky_run"``/``"array_node"``, short name).
    result_path
        Path of the result version from the server root (None if never opened).
    version
        ``result_version`` written to (or found up to date).
    new_version
        True when this call created that version (settings not seen before).
    frames
        Frames in the source.
    skipped
        Frames already done with the same settings before this call (not recomputed).
    processed
        Frames computed and written by this call.
    errors
        Frames that failed in this call: index → message (``"run"``: the whole run).
    status
        Final ``status`` of the result version (``"up_to_date"`` when nothing was to do).
    seconds
        Wall time spent on this source (s).
    """

    source_id: str
    kind: str
    label: str
    frames: int
    result_path: str | None = None
    version: int | None = None
    new_version: bool = False
    skipped: int = 0
    processed: int = 0
    errors: dict[Any, str] = field(default_factory=dict)
    status: str = "pending"
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        """Frames processed per second of wall time (0 when none)."""
        return self.processed / self.seconds if self.seconds > 0 and self.processed else 0.0


@dataclass
class ReprocessSummary:
    """Everything `reprocess` did (``runs`` in input order)."""

    runs: list[RunSummary]
    mode: str = "local"
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        """Frames computed by this call, all sources."""
        return sum(r.processed for r in self.runs)

    @property
    def failed(self) -> int:
        """Frames (or runs) that failed, all sources."""
        return sum(len(r.errors) for r in self.runs)

    @property
    def ok(self) -> bool:
        """True when no frame failed and no run failed."""
        return self.failed == 0 and all(r.status in ("complete", "up_to_date")
                                        for r in self.runs)

    def table(self) -> str:
        """A plain-text table: one line per source, then the totals."""
        head = (f"{'source':34s} {'version':>7s} {'frames':>6s} {'skipped':>7s} "
                f"{'processed':>9s} {'failed':>6s}  {'status':21s} {'s':>7s} {'frames/s':>8s}")
        lines = [head, "-" * len(head)]
        for r in self.runs:
            version = "-" if r.version is None else f"v{r.version}{'*' if r.new_version else ''}"
            lines.append(f"{r.label:34.34s} {version:>7s} {r.frames:>6d} {r.skipped:>7d} "
                         f"{r.processed:>9d} {len(r.errors):>6d}  {r.status:21.21s} "
                         f"{r.seconds:>7.1f} {r.frames_per_s:>8.2f}")
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        lines.append(f"{'total (' + self.mode + ')':34.34s} {'':>7s} "
                     f"{sum(r.frames for r in self.runs):>6d} "
                     f"{sum(r.skipped for r in self.runs):>7d} {self.processed:>9d} "
                     f"{self.failed:>6d}  {'':21s} {self.seconds:>7.1f} {rate:>8.2f}")
        notes = ["* new result version"] if any(r.new_version for r in self.runs) else []
        for r in self.runs:
            for key, msg in list(r.errors.items())[:5]:
                notes.append(f"{r.label} frame {key}: {msg}")
            if len(r.errors) > 5:
                notes.append(f"{r.label}: {len(r.errors) - 5} more failed frames")
        return "\n".join(lines + notes)
