"""The live demo: a Bluesky scan of simulated frames, masked while it runs, results in Tiled.

`run_live_demo` opens a `Session` (the embedded Tiled server, or ``tiled_uri``; a RunEngine
with TiledWriter (``batch_size=1``) and `XRDMaskCallback` after it), runs
``count([det], num=frames)`` on the simulated detector, waits for the masks, then prints where
the results live, one line per frame, a Tiled client snippet, and writes a PNG of one frame.
This module prints: it is the user-facing end of ``xrd-mask demo --live``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_live_demo"]

log = logging.getLogger(__name__)


def _choose_masker(masker: Any) -> Any:
    from ..masking import get_masker

    if masker is not None:
        return get_masker(masker)
    try:
        return get_masker("unet")
    except Exception as exc:  # no packaged model yet, torch missing, ...
        print(f"note: the U-Net is unavailable ({type(exc).__name__}: {exc}); "
              "using the classical ring-outlier masker.")
        return get_masker("classical")


def _snippet(uri: str, api_key: str | None, uid: str, root: str) -> str:
    key = f', api_key="{api_key}"' if api_key else ""
    return (
        "from tiled.client import from_uri\n"
        "from tiled.queries import Key\n"
        f'c = from_uri("{uri}"{key})\n'
        f'node = c["{root}/{uid}"]   # or: c.search_deep(Key("source_uid") == "{uid}")\n'
        'print(node.metadata["status"], node.metadata["frames_done"])\n'
        'masks = node["mask"][:]             # uint8 (frame, y, x): 0 keep, 1 spot, 2 static\n'
        'patterns = node["pattern"].read()   # xarray.Dataset: intensity (frame, radial), '
        "two_theta (deg), q (1/Å)\n"
        f'raw = c["{uid}"]["primary"]        # the raw run (BlueskyRun)'
    )


def _shell_exports(uri: str, api_key: str | None, uid: str, root: str) -> str:
    """The ``export`` lines the README's curl commands need, and one such command."""
    import shlex

    key = shlex.quote(api_key) if api_key else "<your API key>"
    return (f"export TILED={shlex.quote(uri)} TILED_API_KEY={key} RUN={uid}\n"
            f'curl -H "Authorization: Apikey $TILED_API_KEY" "$TILED/metadata/{root}/$RUN"')


def _write_png(client: Any, uid: str, field: str, node: Any, record: Any, masker: Any,
               poni: str, out_dir: Path) -> Path | None:
    from ..azimuthal import integrate
    from ..geometry import as_geometry
    from ..masking import get_masker
    from ..pipeline import process_frame
    from ..protocols import MaskCode
    from ..tiled.frames import as_frame
    from ..tiled.results import load_patterns, load_tables
    from .plotting import save_overlay

    done = record.done
    if not done:
        return None
    i = max(done, key=lambda k: record.frames[k].spot_fraction)
    frame = as_frame(client[uid]["primary"][field][i])
    codes = np.asarray(node["mask"][i])
    geometry = as_geometry(poni, frame.shape)
    static = codes == MaskCode.STATIC
    patterns = {"raw": integrate(frame, geometry, mask=static)}
    stored = load_patterns(client, uid).sel(frame=i)
    patterns[f"{masker.name} masked"] = stored
    if masker.name != "classical":
        patterns["classical masked"] = process_frame(frame, geometry,
                                                     get_masker("classical")).pattern
    frames_table = load_tables(client, uid).get("frames")
    return save_overlay(out_dir / f"live_{uid[:8]}_frame{i:03d}.png", frame, codes == MaskCode.SPOT,
                        static=static, patterns=patterns,
                        summary=None if frames_table is None else {uid[:8]: frames_table},
                        title=f"run {uid[:8]}, frame {i}: {masker.name} spots in red, "
                              "read back from Tiled")


def run_live_demo(
    *,
    frames: int = 5,
    size: int = 2880,
    masker: Any = None,
    tiled_uri: str | None = None,
    api_key: str | None = None,
    keep: bool = False,
    out_dir: str | Path = Path("xrd-mask-live"),
    progress: bool = True,
    seed: int = 0,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Run a live Bluesky scan of simulated frames with masking into Tiled, and report.

    Parameters
    ----------
    frames
        Number of frames in the ``count`` plan.
    size
        Frame size, pixels per side (2880 = Varex 4343CT).
    masker
        ``"unet"``, ``"classical"``, a `Masker`, or None: the packaged U-Net when available,
        else the classical filter.
    tiled_uri, api_key
        Use this Tiled server (it must be able to read ``out_dir/raw``) instead of starting the
        embedded one; ``api_key`` defaults to ``TILED_API_KEY``.
    keep
        Leave the embedded server running after the scan and block until Ctrl-C.
    out_dir
        Detector HDF5 files (``raw/``), the embedded server's catalog (``tiled/``), the PNG
        and ``live_summary.json``.
    progress
        Show tqdm progress bars.
    seed
        Seed of the simulated frames.
    timeout
        Seconds to wait for the masking to finish after the scan.

    Returns
    -------
    dict
        ``run_uid``, ``tiled_uri``, ``results_path``, ``status``, ``masker`` (settings),
        ``scan_s``, ``processing_s`` (scan start to last result), ``frames`` (per frame:
        ``index``, ``spot_fraction`` (of the pixels that are not static), ``static_fraction``
        (of all pixels), ``seconds``, ``latency_s``, ``error``), ``errors``, ``png``, ``out_dir``.

    Raises
    ------
    TiledConnectionError, TiledAuthError
        ``tiled_uri`` unreachable, or the key refused.
    """
    from bluesky.plans import count

    from ..bluesky.session import Session
    from ..progress import progress as tqdm
    from ..tiled.results import find_results

    out = Path(out_dir).resolve()
    raw_dir = out / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    chosen = _choose_masker(masker)
    if tiled_uri:
        session = Session(uri=tiled_uri, api_key=api_key, readable_storage=[raw_dir])
        key = api_key  # printed in the snippet only when given, not taken from the environment
        print(f"using the Tiled server at {session.uri}; it must be able to read {raw_dir}")
    else:
        session = Session(directory=out / "tiled", readable_storage=[raw_dir])
        key = session.api_key
        print(f"embedded Tiled server at {session.uri} (catalog in {out / 'tiled'})")
    with session:
        RE, client, uri = session.RE, session.client, session.uri
        det = session.add_detector(raw_dir, shape=(size, size), seed=seed, name="det")
        cb = session.start_masking(chosen)  # after TiledWriter, which the Session subscribed
        bar = tqdm(total=frames, desc="scan", unit="frame", disable=not progress)

        def _tick(name: str, doc: dict) -> None:
            if name == "event":
                bar.update(1)

        RE.subscribe(_tick)
        t0 = time.perf_counter()
        result = RE(count([det], num=frames), **det.start_metadata())
        scan_s = time.perf_counter() - t0
        bar.close()
        uid = result.run_start_uids[0]
        record = cb.records.get(uid)
        with tqdm(total=frames, desc="masking", unit="frame", disable=not progress) as mbar:
            deadline = time.monotonic() + timeout
            finished = False
            while not finished:
                finished = cb.wait(0.2) or time.monotonic() > deadline
                mbar.update((len(record.frames) if record else 0) - mbar.n)
        processing_s = time.perf_counter() - t0
        session.stop_masking(timeout=5)
        summary = _report(client, uid, uri, key, chosen, det.generator.poni_text, out,
                          record, scan_s, processing_s, find_results)
        summary["exit_status"] = result.exit_status
        (out / "live_summary.json").write_text(json.dumps(summary, indent=1, default=str))
        if keep and session.server is not None:
            print(f"\nTiled server running at {uri} (browser: {session.server.web_ui_link}); "
                  "Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                print("stopping the Tiled server")
        return summary


def _report(client: Any, uid: str, uri: str, key: str | None, masker: Any, poni: str,
            out: Path, record: Any, scan_s: float, processing_s: float,
            find_results: Any) -> dict[str, Any]:
    from ..tiled.results import DEFAULT_ROOT
    from .evaluate import SPOTS_PCT_HEAD, SPOTS_PCT_NOTE

    node = find_results(client, uid)
    node.refresh()
    md = node.metadata
    path = f"{DEFAULT_ROOT}/{uid}"
    rows = []
    print(f"\nrun {uid}: scan {scan_s:.1f} s, results complete after {processing_s:.1f} s")
    settings = masker.settings()
    model = f", model {settings['model_id']}" if settings.get("model_id") else ""
    print(f"masker: {masker.name}{model}")
    print(f"results: {uri}/metadata/{path}  status: {md.get('status')}")
    print(f"{'frame':>5}  {SPOTS_PCT_HEAD:>8}  {'static %':>8}  {'seconds':>7}  {'latency s':>9}")
    for i in sorted(record.frames if record else []):
        f = record.frames[i]
        seconds = sum(f.timings.get(k, 0.0) for k in ("mask", "integrate"))
        spots = f.spot_fraction  # of the non-static pixels, as MaskResult.spot_fraction
        rows.append({"index": i, "spot_fraction": spots,
                     "static_fraction": f.static_fraction, "seconds": seconds,
                     "latency_s": f.timings.get("latency"), "error": f.error})
        if f.error:
            print(f"{i:>5}  failed: {f.error}")
        else:
            print(f"{i:>5}  {100 * spots:>8.3f}  {100 * f.static_fraction:>8.3f}  "
                  f"{seconds:>7.2f}  {f.timings.get('latency', float('nan')):>9.2f}")
    print(SPOTS_PCT_NOTE + "; static %: of all pixels")
    print("\nquery them with a plain Tiled client:\n")
    print(_snippet(uri, key, uid, DEFAULT_ROOT))
    print("\nor over HTTP, in a shell (the README's curl examples use these variables):\n")
    print(_shell_exports(uri, key, uid, DEFAULT_ROOT))
    field = (record.spec.field if record and record.spec else "det")
    png = None
    try:
        png = _write_png(client, uid, field, node, record, masker, poni, out)
    except Exception as exc:
        log.warning("could not draw the overlay PNG: %s", exc)
    if png:
        print(f"\nPNG: {png}")
    return {"run_uid": uid, "tiled_uri": uri, "results_path": path,
            "status": md.get("status"), "masker": masker.settings(), "scan_s": scan_s,
            "processing_s": processing_s, "frames": rows, "errors": dict(md.get("errors", {})),
            "png": str(png) if png else None, "out_dir": str(out)}
