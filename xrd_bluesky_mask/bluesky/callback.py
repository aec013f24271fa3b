"""`XRDMaskCallback`: mask every detector frame of a Bluesky run while it runs.

Subscribe it to the RunEngine **after** TiledWriter (``batch_size=1``), so that a frame is in
Tiled when its document reaches the callback::

    tw = TiledWriter(client, batch_size=1)
    RE.subscribe(tw)
    cb = XRDMaskCallback(client, masker="classical")
    RE.subscribe(cb)
    RE(count([det], num=10), **det.start_metadata())
    cb.wait()
    find_results(client, RE_result.run_start_uids[0])

On the RunEngine's thread the callback only records what to do (run uid, stream, field, frame
index); a `Worker` reads the frame from Tiled, masks and integrates it and writes the results to
``derived/xrd_mask/<run uid>``. It never raises into the RunEngine: errors are logged and
recorded on the derived node.

Nothing is lost when Tiled goes away: results are kept in a local journal on disk
(`xrd_bluesky_mask.sinks.journal`) and written from there, with back-off, once Tiled
answers again, also by the next callback or ``xrd-mask worker`` started on the same journal
if this process dies. The same path serves ``xrd-mask worker`` (`bluesky.remote`).

Documents are routed per run (`xrd_bluesky_mask.bluesky.run_masker`) by a small router of our
own rather than `event_model.RunRouter`: RunRouter's Filler copies every event page, which for
images carried inline in events means a full copy of each frame on the RunEngine's thread.

This module imports no torch (nor tiled, pyFAI or xarray) at import time.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..documents import find_image_field, find_poni
from ..geometry import poni_text_from
from ..pipeline.worker import Worker
from ..protocols import FrameSource, Masker, ResultSink
from ..sinks.journal import (
    DEFAULT_MAX_BYTES,
    Journal,
    default_journal_dir,
    journal_name,
    write_origin,
)
from .result_docs import ResultDocuments
from .run_masker import RunMasker

if TYPE_CHECKING:
    from ..azimuthal import IntegrationSettings

__all__ = ["XRDMaskCallback", "find_image_field", "find_poni"]

log = logging.getLogger(__name__)


@runtime_checkable
class _Located(Protocol):
    """A sink that says where it writes (`TiledResultSink`): the journal records it."""

    @property
    def uri(self) -> str: ...
    @property
    def root(self) -> str: ...


class XRDMaskCallback:
    """Mask and integrate the frames of every run, live, into Tiled derived nodes.

    Parameters
    ----------
    client
        Tiled container holding the runs (what TiledWriter writes to); also where the results go
        (``root``, from the server's root). Not needed when ``source`` and ``sink`` are given.
    masker
        ``"unet"`` (None: the U-Net with the registry's active model), ``"classical"``, a
        plugin name or a `Masker`. Change it between runs with `set_model` / `set_masker`.
    field
        Image data key; None: the largest 2D (or 1×2D) key of the stream's descriptor.
    stream
        Stream holding the frames; None: the first stream with an image.
    poni
        Geometry (PONI text or path, or a Geometry) overriding what the run carries (start
        metadata ``xrd_mask_poni``, or a device configuration key ending in ``poni``).
    integration
        `IntegrationSettings` for the 1D patterns; None for the defaults.
    root
        Results root path, default ``derived/xrd_mask``.
    source, sink
        A `FrameSource` and `ResultSink` replacing the Tiled ones (tests, other stores).
    frame_timeout
        Seconds to wait for a frame to become readable in Tiled (the server answering, the
        frame not there yet) before recording it failed. A frame whose detector file (named
        by the run's StreamResource) is readable here is read from that file, without Tiled.
    read_retry_for
        Seconds a frame read waits while Tiled is unreachable (connection refused, timeouts,
        HTTP 502/503/504) before the frame is recorded failed; None: as long as the outage
        lasts (until `close`).
    retry_max_wait
        Longest wait between two attempts while Tiled is unreachable, seconds (reads and the
        journal's replay back off from 0.5 s up to this): how soon after Tiled's return the
        results start flowing again.
    niceness
        Nice increment of the worker threads (Linux), so the RunEngine keeps priority.
    quiet_s
        The worker's Tiled reads, computation and writes wait until no document has arrived
        for this many seconds, so they fill the gaps between the RunEngine's bursts (exposures
        and moves longer than ``quiet_s``) instead of competing with TiledWriter for the
        server, the cores and the GIL. A scan emitting documents back to back (gaps of
        0.05-0.25 s measured for 2880 x 2880 frames on 2 cores) is processed right after it;
        0 processes at once, which slowed such scans by 25-190 % in `benchmarks/bench_live.py`.
        ``"auto"`` (default): wait 0.5 s only while the frames come back to back (less than
        1 s apart), else process at once: with 1 s exposures at 1024 px the median latency
        was 0.9 s against 3.0 s with 0.5, at the same scan time (see `Worker` and
        docs/performance.md).
    batch
        Frames of a run masked together when several are waiting (see `Worker`); ``"auto"``:
        4 with the U-Net on a GPU, else 1.
    journal
        Where results wait until Tiled has them: ``"auto"`` (with the Tiled sink) a folder
        per server and results root under ``$XRD_MASK_JOURNAL`` (default: the user state
        folder, ``~/.local/state/xrd-bluesky-mask/journal`` on Linux); a folder path; a
        `Journal`; or None to write directly (results are then lost if Tiled is unreachable
        for longer than the client's own retries).
    journal_max_bytes
        Most bytes of frame results the journal holds (2 GiB); frames beyond are recorded as
        failed, with the command that recovers them. The journal waits out an unreachable
        store (connection errors, timeouts, HTTP 502/503/504:
        `xrd_bluesky_mask.tiled.retry.unreachable`).
    if_misoriented
        When the geometry check on a run's first frame is decisive that the frames fit the
        PONI only once flipped or transposed: ``"refuse"`` (default) writes no mask for that
        run (``failed``, with the reason and what to do), ``"apply"`` masks it in the
        orientation that fits (recorded as ``orientation_applied`` in its metadata), ``"keep"``
        masks it as given with the warning. See `Worker`.
    tables
        Compute and write each frame's spot table, frame summary and ring texture
        (`xrd_bluesky_mask.spots`; about 0.3-0.6 s per 2880² frame on 2 cores); False writes
        masks and patterns alone.
    dask
        Mask and integrate the frames on a Dask cluster: its scheduler's address
        (``"tcp://HOST:8786"``) or a `distributed.Client` (made with
        ``set_as_default=False``). Frames are still read here and results written here, in
        frame order and exactly once, through the journal (`xrd_bluesky_mask.pipeline.fanout`);
        the scheduler going away falls back to masking here, with a warning.
    workers
        Start a local Dask cluster of this many worker processes (one thread each) for the
        callback's life, instead of ``dask``. Sizing: workers needed = frame rate x
        per-frame cost (the lag report's ``workers_needed``; docs/performance.md).
    """

    def __init__(self, client: Any = None, *, masker: Masker | str | None = None,
                 field: str | None = None, stream: str | None = "primary", poni: Any = None,
                 integration: IntegrationSettings | None = None,
                 root: str = "derived/xrd_mask", source: FrameSource | None = None,
                 sink: ResultSink | None = None,
                 frame_timeout: float = 30.0, read_retry_for: float | None = None,
                 retry_max_wait: float = 10.0, niceness: int = 5,
                 quiet_s: float | str = "auto", batch: int | str = "auto",
                 journal: Any = "auto",
                 journal_max_bytes: int = DEFAULT_MAX_BYTES,
                 if_misoriented: str = "refuse", dask: Any = None,
                 workers: int | None = None, tables: bool = True) -> None:
        if client is None and (source is None or sink is None):
            raise ValueError(
                "XRDMaskCallback needs a Tiled client (the container TiledWriter writes runs "
                "to), or both source= (a FrameSource) and sink= (a ResultSink)."
            )
        # what takes frame locations from the documents (`TiledFrameSource.note_file`), also
        # behind a RetryingSource (``xrd-mask worker``)
        self.locator: Any = next((s for s in (source, getattr(source, "inner", None))
                                  if hasattr(s, "note_file")), None)
        if source is None:
            from ..tiled.frames import TiledFrameSource
            from ..tiled.retry import RetryingSource

            self.locator = TiledFrameSource(client, timeout=frame_timeout)
            source = RetryingSource(self.locator, give_up_after=read_retry_for,
                                    max_wait=retry_max_wait,
                                    stopped=lambda: self.worker.closed)
        if journal == "auto":
            journal = None
            if sink is None and client is not None:
                journal = default_journal_dir() / journal_name(
                    str(client.context.api_uri), root.strip("/"))
        if sink is None:
            from ..sinks.tiled import TiledResultSink

            sink = TiledResultSink(client, root=root)
        if journal is not None and not isinstance(journal, Journal):
            journal = Journal(journal, max_bytes=journal_max_bytes)
        if journal is not None and isinstance(sink, _Located):
            write_origin(journal.root, str(sink.uri), str(sink.root))
            from .leftovers import report_leftovers

            report_leftovers(exclude=[journal.root])
        self.field, self.stream, self.poni = field, stream, poni_text_from(poni)
        self.poni_path = (str(poni) if isinstance(poni, str | os.PathLike)
                          and "\n" not in str(poni) else None)
        self._close_dask: Any = None
        if dask is not None or workers is not None:
            from ..reprocess.cluster import dask_client

            dask, self._close_dask = dask_client(dask, workers, default=False)
        self.worker = Worker(source, sink, masker=masker, integration=integration,
                             niceness=niceness, quiet_s=quiet_s, batch=batch,
                             journal=journal, retry_max_wait=retry_max_wait,
                             if_misoriented=if_misoriented, dask=dask,
                             tables=tables).start()
        self._runs: dict[str, RunMasker] = {}
        self._documents: ResultDocuments | None = None
        self._by_descriptor: dict[str, str] = {}
        self._by_resource: dict[str, str] = {}

    @property
    def records(self) -> dict:
        """run uid → `RunRecord` (frames, errors, status, timings)."""
        return self.worker.records

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Take one document (``RE.subscribe(cb)``); never raises."""
        self.worker.poke()
        try:
            self._route(name, doc)
        except Exception as exc:
            uid = self._run_of(name, doc)
            log.exception("xrd-mask: error handling %s document of run %s", name, uid)
            if uid:
                self.worker.note_run_error(uid, f"{name} document: {type(exc).__name__}: {exc}")

    def _run_of(self, name: str, doc: dict[str, Any]) -> str | None:
        try:
            if name == "start":
                return doc["uid"]
            if name in ("stop", "descriptor", "stream_resource"):
                return doc["run_start"]
            if name in ("event", "event_page"):
                return self._by_descriptor.get(doc["descriptor"])
            if name == "stream_datum":
                return self._by_resource.get(doc["stream_resource"])
        except (KeyError, TypeError):
            pass
        return None

    def _route(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._runs[doc["uid"]] = RunMasker(self, doc)
            return
        uid = self._run_of(name, doc)
        if not uid:
            return
        run = self._runs.get(uid)
        if run is None:
            return
        if name == "descriptor":
            self._by_descriptor[doc["uid"]] = uid
        elif name == "stream_resource":
            self._by_resource[doc["uid"]] = uid
        run(name, doc)
        if name == "stop":
            self._runs.pop(uid, None)
            for table in (self._by_descriptor, self._by_resource):
                for key in [k for k, v in table.items() if v == uid]:
                    del table[key]

    def subscribe(self, callback: Any) -> int:
        """Send the results as Bluesky documents to ``callback(name, doc)``: per source run a
        derived run with an ``xrd_mask`` event per frame written (spot count, masked share,
        texture index: `xrd_bluesky_mask.bluesky.result_docs`), e.g. a
        `~xrd_bluesky_mask.apps.live_view.LiveSpotView` or bluesky's ``LivePlot``. Called on
        the worker's write thread; returns a token for `unsubscribe`."""
        if self._documents is None:
            self._documents = ResultDocuments()
            self.worker.add_listener(self._documents)
        return self._documents.subscribe(callback)

    def unsubscribe(self, token: int) -> None:
        """Stop sending result documents to the callback ``token`` names."""
        if self._documents is not None:
            self._documents.unsubscribe(token)

    def set_masker(self, masker: Any) -> Any:
        """Mask with ``masker`` (name, instance, None = active U-Net) from the next run on.

        The run being processed keeps its masker; an unusable masker raises here and changes
        nothing. Thread-safe. Returns the masker instance.
        """
        return self.worker.set_masker(masker)

    def set_model(self, model: Any = "active", *, registry: Any = None) -> Any:
        """Mask with this U-Net model from the next run on.

        ``model``: a registry version (``3``, ``"v3"``), model id, ``"active"``, or a model
        folder path (`pathlib.Path`); ``registry``: a `ModelRegistry` or its directory (default
        registry if None). The weights' checksum is verified first. Returns the masker.
        """
        from pathlib import Path

        from ..masking import get_masker
        from ..models.registry import ModelRegistry

        if isinstance(model, Path):
            folder = model
        else:
            reg = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
            folder = reg.get(model).path
        return self.worker.set_masker(get_masker("unet", model=folder))

    def waiting(self) -> str:
        """What is not in Tiled yet and where it waits ("" if nothing): frames still being
        read or masked, frame results and run closings in the journal (with its folder)."""
        parts = []
        if self.worker.pending:
            parts.append(f"{self.worker.pending} frames and run steps not yet masked")
        journaled = self.worker.journaled
        if journaled is not None and journaled.pending:
            journal = journaled.journal
            runs = sorted({op.run for op in journal.ops})
            parts.append(f"{journal.frames_waiting()} frame results and "
                         f"{journaled.pending - journal.frames_waiting()} run updates of "
                         f"{len(runs)} runs ({', '.join(runs)}) wait in the journal at "
                         f"{journal.directory} for the result store")
        return "; ".join(parts)

    def wait(self, timeout: float | None = None, *, warn: bool = True) -> bool:
        """Block until every frame seen so far is masked and its results are *delivered*:
        written to the result store (Tiled) out of the journal, runs closed there with their
        final status. False after ``timeout`` seconds (None: no limit), with a warning (unless
        ``warn`` is false) that names what is pending and where (`waiting`)."""
        done = self.worker.wait(timeout)
        if not done and warn:
            log.warning("xrd-mask: results not all delivered after %g s: %s", timeout,
                        self.waiting() or "the last result is being written")
        return done

    def close(self, timeout: float | None = None) -> bool:
        """Finish queued work (up to ``timeout`` s), then stop the worker threads (and the
        local Dask cluster the callback started, or its client of a given scheduler)."""
        try:
            return self.worker.close(timeout)
        finally:
            closer, self._close_dask = self._close_dask, None
            if closer is not None:
                try:
                    closer()
                except Exception as exc:  # a scheduler already gone
                    log.info("xrd-mask: closing the Dask client: %s", exc)

    def __enter__(self) -> XRDMaskCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
