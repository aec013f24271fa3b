"""A Prefect end-of-run flow: mask and integrate a finished run again from Tiled.

Facilities run their end-of-run processing as Prefect flows started by each stop document
(``end_of_run_workflow(stop_doc)`` at NSLS-II, ALS); `xrd_mask_end_of_run` is one more of them. It
takes the stop document (or the run's uid), runs `xrd_bluesky_mask.reprocess.reprocess` on the
run (resumable: frames done with the same settings are skipped, so a retry only finishes the
rest; with ``dask``/``workers`` the frames go to a Dask cluster), retries on failure (failed
frames, an unreachable server; not what only a person can fix: an unknown run, a refused key, a
read-only catalog, a bad option, a PONI or model that cannot be used), and returns where the
result lives (``result_path``, the derived node's path from the server root).

Without a Prefect server (no ``PREFECT_API_URL``), calling the flow runs it in this process on
Prefect's temporary local API. The ``prefect`` extra installs Prefect:
``pip install "xrd-bluesky-mask[prefect]"``.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, get_run_logger, task

from ..errors import (
    ConfigError,
    GeometryError,
    MissingExtra,
    ModelError,
    RunFailed,
    TiledAuthError,
    UnknownSource,
)
from ..tiled.results import DEFAULT_ROOT

__all__ = ["reprocess_run", "run_uid", "xrd_mask_end_of_run"]


@task(name="xrd-mask run uid")
def run_uid(stop_document: dict[str, Any] | None = None, uid: str | None = None) -> str:
    """The run's start uid: ``uid``, else the stop document's ``run_start``."""
    if uid:
        return uid
    if stop_document and stop_document.get("run_start"):
        return str(stop_document["run_start"])
    raise ConfigError("give the run's stop document (with 'run_start') or its uid")


#: Failures a retry cannot mend: they need a person (the message says what to do).
_NOT_RETRIED = (TiledAuthError, UnknownSource, ConfigError, GeometryError, ModelError,
                MissingExtra)


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry unless the failure is one of `_NOT_RETRIED`."""
    return not isinstance(state.data, _NOT_RETRIED)


@task(name="xrd-mask reprocess", retry_condition_fn=_worth_retrying)
def reprocess_run(
    uid: str,
    tiled_uri: str,
    api_key: str | None = None,
    *,
    catalog: str = "",
    masker: str = "unet",
    model: str | None = None,
    threshold: float | None = None,
    poni: str | None = None,
    root: str = DEFAULT_ROOT,
    dask: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Reprocess one run from Tiled and return its summary (see `xrd_mask_end_of_run`).

    Raises
    ------
    RunFailed
        A frame or the run failed (the result records which); Prefect retries the task.
    """
    from ..reprocess import reprocess
    from ..tiled.access import check_writable
    from ..tiled.connect import connect

    logger = get_run_logger()
    client = connect(tiled_uri, api_key)
    runs = client[catalog] if catalog else client
    check_writable(runs, uri=tiled_uri)  # a read-only catalog: one clear error, no frame tried
    summary = reprocess(runs, [uid], masker=_masker(masker, model, threshold), poni=poni,
                        root=root, dask=dask, workers=workers, progress=False)
    logger.info("xrd-mask reprocessing of %s:\n%s", uid, summary.table())
    (run,) = summary.runs
    if not summary.ok:
        first = next(iter(run.errors.items()), ("run", run.status))
        raise RunFailed(f"run {uid}: {len(run.errors)} frame(s) failed, status {run.status!r} "
                        f"(frame {first[0]}: {first[1]}); result at {run.result_path}")
    return {"uid": uid, "result_path": run.result_path, "version": run.version,
            "new_version": run.new_version, "frames": run.frames, "processed": run.processed,
            "skipped": run.skipped, "status": run.status, "seconds": round(run.seconds, 3),
            "mode": summary.mode}


def _masker(masker: str, model: str | None, threshold: float | None) -> Any:
    """A masker from flow parameters: ``unet`` (with ``model``, ``threshold``), ``classical``,
    a plugin name, or a ``module:Class`` import path."""
    import importlib

    from ..masking import get_masker

    if ":" in masker:
        module, _, name = masker.partition(":")
        try:
            return getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"masker {masker}: cannot import it ({exc})") from None
    if masker == "unet":
        return get_masker("unet", model=model, threshold=threshold)
    return get_masker(masker)


@flow(name="xrd-mask-end-of-run")
def xrd_mask_end_of_run(
    stop_document: dict[str, Any] | None = None,
    uid: str | None = None,
    tiled_uri: str | None = None,
    api_key: str | None = None,
    catalog: str = "",
    masker: str = "unet",
    model: str | None = None,
    threshold: float | None = None,
    poni: str | None = None,
    root: str = DEFAULT_ROOT,
    dask: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    retry_delay_s: float = 30.0,
) -> dict[str, Any]:
    """Mask and integrate a finished Bluesky run again and return where its result lives.

    Parameters
    ----------
    stop_document, uid
        The run: its stop document (``run_start`` is the uid) or its start uid.
    tiled_uri, api_key
        The Tiled server (``http://HOST:8000/api/v1``; default ``$TILED_URI``) and its key
        (default: ``$TILED_API_KEY``, or the key in the URI).
    catalog
        Container holding the runs (what TiledWriter writes to; default: the root).
    masker, model, threshold
        ``unet`` (the active model, or ``model``: a registered id/version, ``light`` or a
        folder; ``threshold`` in (0, 1)), ``classical``, a plugin name or ``module:Class``.
    poni
        PONI file overriding the geometry the run carries.
    root
        Results root (default ``derived/xrd_mask``).
    dask, workers
        A Dask scheduler address, or a local Dask cluster of this many worker processes;
        neither: in the flow's process.
    retries, retry_delay_s
        How often the reprocessing is tried again after a failure, and the wait between tries
        (s). A retry resumes: frames already written are not computed again. Failures that
        need a person (unknown run, refused key, bad option) fail at once.

    Returns
    -------
    dict
        ``uid``, ``result_path`` (the derived node's path from the server root), ``version``,
        ``new_version``, ``frames``, ``processed``, ``skipped``, ``status``, ``seconds``,
        ``mode``, ``exit_status`` (the stop document's, when given).
    """
    uri = tiled_uri or os.environ.get("TILED_URI")
    if not uri:
        raise ConfigError("no Tiled server given: pass tiled_uri (http://HOST:8000/api/v1) "
                          "or set TILED_URI")
    the_uid = run_uid(stop_document, uid)
    attempt = reprocess_run.with_options(retries=retries, retry_delay_seconds=retry_delay_s)
    result = attempt(the_uid, uri, api_key, catalog=catalog, masker=masker, model=model,
                     threshold=threshold, poni=poni, root=root, dask=dask, workers=workers)
    if stop_document is not None:
        result["exit_status"] = stop_document.get("exit_status")
    get_run_logger().info("xrd-mask result of %s at %s", the_uid, result["result_path"])
    return result
