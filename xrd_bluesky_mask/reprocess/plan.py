"""Which frames each source still needs with these settings (resumable, idempotent).

For every source the provenance of the new results is built first; its `settings_id` selects
the existing result version with the same settings, whose ``frames_done`` are skipped. No such
version: every frame is to do, and `TiledResultSink.open_run` will create the next version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import GeometryError
from ..sinks.base import SinkWrapper
from ..sinks.retry import RetryingTiledSink
from .sources import Source
from .summary import RunSummary

if TYPE_CHECKING:
    from ..spots import FrameTables

__all__ = ["Job", "JobSink", "plan_jobs"]


@dataclass
class Job:
    """One source's work: ``todo`` frame indices, and its `RunSummary` filled as it runs."""

    source: Source
    metadata: dict[str, Any]
    done: set[int]
    todo: list[int]
    status_before: str | None
    summary: RunSummary
    errors: dict[Any, str] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        """Nothing to compute and the stored version already says ``complete``."""
        return not self.todo and self.status_before == "complete"

    @property
    def extra_metadata(self) -> dict[str, Any]:
        """Provenance keys the live worker does not know: what kind of source, and where."""
        return {"source_kind": self.source.kind, "source_path": self.source.array_path}


def plan_jobs(root_client: Any, sources: list[Source], *, masker_settings: dict[str, Any],
              integration: dict[str, Any], root: str) -> list[Job]:
    """A `Job` per source, with the frames done by an earlier call with equal settings skipped.

    Raises
    ------
    GeometryError
        A source's PONI does not fit its frames (all such sources listed together).
    """
    from ..geometry import as_geometry
    from ..provenance import provenance, settings_id
    from ..tiled.results import node_path, result_versions

    problems: list[str] = []
    jobs: list[Job] = []
    for src in sources:
        try:
            as_geometry(src.poni, src.shape, source=src.geometry_source)
        except GeometryError as exc:
            problems.append(f"{src.source_id}: {exc}")
            continue
        md = provenance(src.source_id, stream=src.stream, field=src.field,
                        masker_settings=masker_settings, poni=src.poni or "",
                        integration=integration, frames_expected=src.n_frames,
                        frame_shape=src.shape, source_kind=src.kind,
                        source_path=src.array_path)
        wanted = md["settings_id"]
        match = [(v, n) for v, n in result_versions(root_client, src.source_id, root=root,
                                                 deep=False)
                 if settings_id(n.metadata) == wanted]
        done: set[int] = set()
        status = version = path = None
        if match:
            version, node = match[-1]
            done = {int(i) for i in node.metadata.get("frames_done", [])}
            status, path = node.metadata.get("status"), node_path(node)
        todo = [i for i in range(src.n_frames) if i not in done]
        summary = RunSummary(src.source_id, src.kind, src.label, src.n_frames,
                             result_path=path, version=version,
                             skipped=len(done & set(range(src.n_frames))))
        jobs.append(Job(src, md, done, todo, status, summary))
    if problems:
        raise GeometryError("geometry unusable for " + "; ".join(problems))
    return jobs


class JobSink(SinkWrapper[RetryingTiledSink]):
    """A `ResultSink` in front of the Tiled one: adds each job's source provenance and notes
    which result version it was filed under (in the job's summary)."""

    def __init__(self, sink: RetryingTiledSink, jobs: list[Job]) -> None:
        super().__init__(sink)
        self.jobs = {job.source.source_id: job for job in jobs}

    def open_run(self, source_uid: str, metadata: dict[str, Any]) -> None:
        """Open the matching version (or the next one), recording which in the summary."""
        job = self.jobs[source_uid]
        self.inner.open_run(source_uid, {**metadata, **job.extra_metadata})
        summary = job.summary
        summary.new_version = summary.version is None
        summary.version = self.inner.result_version(source_uid)
        summary.result_path = self.inner.result_path(source_uid)

    def mark_done(self, source_uid: str, indices: Iterable[int]) -> None:
        """Pass on frames written by other processes."""
        self.inner.mark_done(source_uid, indices)

    def add_tables(self, source_uid: str, tables: Mapping[int, FrameTables]) -> None:
        """Pass on the table rows of frames written by other processes."""
        self.inner.add_tables(source_uid, tables)

    def close_run(self, source_uid: str, status: str, errors: dict[Any, str]) -> None:
        """Finish the version; the final status goes into the summary."""
        self.inner.close_run(source_uid, status, errors)
        self.jobs[source_uid].summary.status = status
