"""`reprocess`: mask and integrate stored frame series again, resumably, here or on Dask."""

from __future__ import annotations

import time
from typing import Any

from ..tiled.results import DEFAULT_ROOT
from .summary import ReprocessSummary

__all__ = ["reprocess"]


def reprocess(
    client: Any,
    sources: Any,
    *,
    masker: Any = None,
    poni: Any = None,
    settings: Any = None,
    root: str = DEFAULT_ROOT,
    dask: Any = None,
    workers: int | None = None,
    progress: bool = True,
    chunk_timeout: float | None = None,
    if_misoriented: str = "refuse",
) -> ReprocessSummary:
    """Mask and integrate every frame of ``sources`` into Tiled result versions.

    Same settings as an earlier call (or the live callback): the frames already done are
    skipped and the same result version is completed. Different settings (masker or model,
    PONI, integration): a new version is written beside the old ones (see
    `xrd_bluesky_mask.tiled.results`); `find_results` then answers with the new one.

    Parameters
    ----------
    client
        Tiled container holding the runs (what TiledWriter writes to), or the server's root.
        Results go under ``root`` from the server's root.
    sources
        One or a list of: run uids, BlueskyRun clients, Tiled queries over the runs
        (``Key("sample") == "x"``; a key not found as given is tried as ``start.<key>``),
        array-node paths or clients holding a frame series ``(N, H, W)`` or
        ``(N, 1, H, W)`` with the PONI text at ``metadata["geometry"]["poni"]``.
    masker
        ``"unet"`` (None: the packaged U-Net), ``"classical"``, a plugin name or a `Masker`.
    poni
        Geometry for every source (PONI text or path, or a Geometry), overriding what each
        carries (a run's start document ``xrd_mask_poni`` or device configuration, a node's
        ``geometry.poni``).
    settings
        `IntegrationSettings` of the 1D patterns; None for the defaults.
    root
        Results root path.
    dask
        A Dask scheduler address (``"tcp://host:8786"``) or a `distributed.Client`: frames are
        processed on its workers, each reading from and writing to Tiled itself.
    workers
        Start a local Dask cluster of this many worker processes (ignored with ``dask``).
        Neither: everything runs in this process (read, compute and write threads).
    chunk_timeout
        Dask only: seconds a chunk of frames may take before it is submitted again (None: 10x
        the slowest chunk so far, at least 120 s; see `xrd_bluesky_mask.reprocess.cluster`).
    progress
        Show progress bars (overall and per source) and print the summary table at the end.
    if_misoriented
        A source whose frames fit its PONI only flipped or transposed (the geometry check on
        its first frame): ``"refuse"`` writes no mask for it, ``"apply"`` masks it in the
        orientation that fits, ``"keep"`` as given (see `xrd_bluesky_mask.pipeline.Worker`).

    Returns
    -------
    ReprocessSummary
        Per source: result path and version, frames skipped/processed/failed, status, seconds.

    Raises
    ------
    UnknownSource
        A uid, path or query names nothing reprocessable (all listed together).
    GeometryError
        No PONI for a source (and none given), a missing PONI file, or a PONI that does not fit.
    TiledConnectionError, TiledAuthError
        The server cannot be reached or refuses the key.
    MissingExtra
        ``dask``/``workers`` without ``distributed`` installed.
    """
    from tiled.client import from_context

    from ..azimuthal import IntegrationSettings
    from ..masking import get_masker
    from ..tiled.connect import tiled_errors
    from .plan import plan_jobs
    from .sources import resolve_sources

    t0 = time.perf_counter()
    uri = str(client.context.api_uri)
    with tiled_errors(uri, "read the sources"):
        root_client = from_context(client.context)
        found = resolve_sources(client, sources, poni=poni)
        chosen = get_masker(masker)
        integration = settings or IntegrationSettings()
        jobs = plan_jobs(root_client, found, masker_settings=chosen.settings(),
                         integration=integration.model_dump(mode="json"), root=root)
    for job in jobs:
        if job.up_to_date:
            job.summary.status = "up_to_date"
    mode = "local"
    if dask is not None or workers:
        from .cluster import dask_client, run_dask

        dclient, close = dask_client(dask, workers)
        mode = f"dask, {len(dclient.nthreads())} workers"
        try:
            run_dask(jobs, root_client, masker=chosen, integration=integration, root=root,
                     client=dclient, progress=progress, chunk_timeout=chunk_timeout,
                     if_misoriented=if_misoriented)
        finally:
            close()
    else:
        from .local import run_local

        run_local(jobs, root_client, masker=chosen, integration=integration, root=root,
                  progress=progress, if_misoriented=if_misoriented)
    summary = ReprocessSummary([job.summary for job in jobs], mode=mode,
                               seconds=time.perf_counter() - t0)
    if progress:
        print(summary.table())
    return summary
