"""`reprocess` in this process: runs by uid and query, array nodes, resuming, versions, errors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from tiled.queries import Key

from xrd_bluesky_mask.azimuthal import IntegrationSettings
from xrd_bluesky_mask.errors import GeometryError, UnknownSource
from xrd_bluesky_mask.geometry import as_geometry
from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.pipeline import process_frame
from xrd_bluesky_mask.provenance import provenance
from xrd_bluesky_mask.reprocess import reprocess
from xrd_bluesky_mask.simulate import simulate_frame
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.tiled.frames import as_frame
from xrd_bluesky_mask.tiled.results import (
    find_results,
    load_masks,
    load_patterns,
    load_tables,
    result_versions,
)


def _root() -> str:
    return f"derived/t_{uuid.uuid4().hex[:8]}"


def _expected(frame: np.ndarray, poni: str, masker) -> tuple[np.ndarray, np.ndarray]:
    """Mask codes and pattern values computed directly, without Tiled."""
    result = process_frame(frame, as_geometry(poni, frame.shape), masker)
    codes = np.where(result.mask.static, 2, np.where(result.mask.spots, 1, 0)).astype(np.uint8)
    return codes, result.pattern.values.astype(np.float32)


def test_runs_by_uid_resume_and_new_settings_make_a_new_version(stored_run, tiled_server,
                                                                 capsys):
    uid, sample, det = stored_run
    client, root = tiled_server.client(), _root()
    first = reprocess(client, uid, masker="classical", root=root, progress=False)
    (run,) = first.runs
    assert (run.version, run.new_version, run.processed, run.skipped) == (1, True, 4, 0)
    assert run.status == "complete" and first.ok and run.result_path == f"{root}/{uid}"
    raw = client[uid]["primary"]["det"]
    masks = load_masks(client, uid, root=root)
    patterns = load_patterns(client, uid, root=root)
    poni = det.generator.poni_text
    for i in range(4):
        codes, values = _expected(as_frame(raw[i]), poni, get_masker("classical"))
        np.testing.assert_array_equal(masks[i], codes)
        np.testing.assert_allclose(patterns.sel(frame=i).values, values, rtol=1e-6,
                                   equal_nan=True)
    md = find_results(client, uid, root=root).metadata
    assert md["source_kind"] == "bluesky_run" and md["source_path"] == f"{uid}/primary/det"
    assert md["poni"] == poni and md["masker"]["n_sigma"] == 3.0

    again = reprocess(client, [uid], masker="classical", root=root, progress=False)
    assert (again.runs[0].status, again.runs[0].processed, again.runs[0].skipped) == (
        "up_to_date", 0, 4)

    stricter = get_masker("classical", n_sigma=6.0)
    third = reprocess(client, Key("sample") == sample, masker=stricter, root=root)
    assert "v2*" in capsys.readouterr().out  # the summary table names the new version
    assert (third.runs[0].version, third.runs[0].processed) == (2, 4)
    newest = find_results(client, uid, root=root)
    assert newest.metadata["result_version"] == 2 and newest.metadata["masker"]["n_sigma"] == 6.0
    assert [v for v, _ in result_versions(client, uid, root=root)] == [1, 2]
    v1, v2 = (load_masks(client, uid, root=root, version=v) for v in (1, 2))
    assert (v2 == 1).sum() < (v1 == 1).sum()  # a higher cut masks fewer spot pixels


def test_frames_already_done_are_not_recomputed(stored_run, tiled_server):
    uid, _, det = stored_run
    client, root = tiled_server.client(), _root()
    masker, settings = get_masker("classical"), IntegrationSettings()
    # an earlier, interrupted session with the same settings wrote frames 0 and 2 (marked all-1)
    md = provenance(uid, stream="primary", field="det", masker_settings=masker.settings(),
                    poni=det.generator.poni_text, integration=settings.model_dump(mode="json"),
                    frames_expected=4, frame_shape=(128, 128))
    sink = TiledResultSink(client, root=root)
    sink.open_run(uid, md)
    raw = client[uid]["primary"]["det"]
    for i in (0, 2):
        frame = as_frame(raw[i])
        res = process_frame(frame, as_geometry(md["poni"], frame.shape), masker, tables=True)
        assert res.tables is not None
        sink.write(uid, i, np.ones(frame.shape, np.uint8), res.pattern,
                   tables=res.tables.at(i) if i == 0 else None)  # frame 2: none computed
    sink.flush(uid)  # then the worker died: status stays "running"

    summary = reprocess(client, uid, masker=masker, root=root, progress=False)
    (run,) = summary.runs
    assert (run.version, run.new_version, run.skipped, run.processed) == (1, False, 2, 2)
    node = find_results(client, uid, root=root)
    assert node.metadata["frames_done"] == [0, 1, 2, 3]
    assert node.metadata["status"] == "complete"
    masks = node["mask"].read()
    assert (masks[0] == 1).all() and (masks[2] == 1).all()  # kept, not recomputed
    codes, _ = _expected(as_frame(raw[3]), md["poni"], masker)
    np.testing.assert_array_equal(masks[3], codes)
    # the tables: frame 0's rows kept from the earlier session, frames 1 and 3 added; frame 1
    # compared with frame 0's stored pattern
    frames = load_tables(client, uid, root=root)["frames"]
    assert list(frames["frame"]) == [0, 1, 3]
    sim = dict(zip(frames["frame"], frames["similarity_to_previous"], strict=True))
    assert np.isnan(sim[0]) and np.isfinite(sim[1]) and np.isfinite(sim[3])


def _series(client, parent: str, n: int, *, four_d: bool = False, geometry: bool = True):
    """An array node holding ``n`` simulated 96x96 frames, with the adapters' metadata."""
    sims = [simulate_frame("rings_spots", seed=20 + i, shape=(96, 96)) for i in range(n)]
    stack = np.stack([s.image for s in sims]).astype(np.float32)
    if four_d:
        stack = stack[:, None]
    md = {"detector_header": {"ExposureTime": "1.0"}}
    if geometry:
        md["geometry"] = {"poni": sims[0].geometry.poni_text, "poni_file": "det.poni"}
    try:
        container = client[parent]
    except KeyError:
        container = client.create_container(parent)
    key = uuid.uuid4().hex[:8]
    container.write_array(stack, key=key, metadata=md)
    return f"{parent}/{key}", stack, sims[0].geometry.poni_text


def test_array_nodes_holding_frame_series(tiled_server):
    client, root = tiled_server.client(), _root()
    path3, stack3, poni = _series(client, "series", 3)
    path4, stack4, _ = _series(client, "series", 2, four_d=True)
    summary = reprocess(client, [path3, client[path4]], masker="classical", root=root,
                        progress=False)
    assert [r.source_id for r in summary.runs] == [path3, path4]
    assert [r.processed for r in summary.runs] == [3, 2] and summary.ok
    for path, stack in ((path3, stack3), (path4, stack4)):
        node = find_results(client, path, root=root)
        assert node.metadata["source_kind"] == "array_node"
        assert node.metadata["source_uid"] == node.metadata["source_path"] == path
        assert "/" not in node.path_parts[-1]
        masks = node["mask"].read()
        for i in range(len(stack)):
            codes, _ = _expected(as_frame(stack[i]), poni, get_masker("classical"))
            np.testing.assert_array_equal(masks[i], codes)


def test_clear_errors_for_what_cannot_be_reprocessed(stored_run, tiled_server, tmp_path):
    uid, _, _ = stored_run
    client = tiled_server.client()
    with pytest.raises(UnknownSource, match="2 sources not found") as info:
        reprocess(client, ["nope", "nope/either"], progress=False)
    assert "nothing at 'nope'" in str(info.value) and "full start uid" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownSource, match="matched nothing"):
        reprocess(client, Key("sample") == "no-such-sample", progress=False)
    bare, _, _ = _series(client, "series", 1, geometry=False)
    with pytest.raises(GeometryError, match="no detector geometry for array node"):
        reprocess(client, bare, masker="classical", progress=False)
    with pytest.raises(UnknownSource, match="neither a Bluesky run nor"):
        reprocess(client, "series", masker="classical", progress=False)
    with pytest.raises(GeometryError, match="not found"):
        reprocess(client, uid, poni=tmp_path / "missing.poni", progress=False)
    wrong = simulate_frame("rings_spots", seed=1, shape=(64, 64)).geometry.poni_text
    with pytest.raises(GeometryError, match="geometry unusable for"):
        reprocess(client, uid, poni=wrong, masker="classical", progress=False)


def test_a_series_that_fits_its_poni_only_flipped_is_refused_or_turned(tiled_server):
    """The geometry check's choice reaches reprocessing: by default no mask for a series
    stored upside down; with ``if_misoriented="apply"`` it is masked the way that fits."""
    from xrd_bluesky_mask.simulate import preset

    shape = (256, 256)
    scene = preset("rings_spots").with_shape(shape).model_copy(
        update={"beam_center_frac": (0.3, 0.35)})
    sim = simulate_frame(scene, seed=5, shape=shape)
    client, root = tiled_server.client(), _root()
    stack = np.stack([sim.image[::-1]] * 2).astype(np.float32)
    try:
        container = client["series"]
    except KeyError:
        container = client.create_container("series")
    key = uuid.uuid4().hex[:8]
    container.write_array(stack, key=key, metadata={"geometry": {
        "poni": sim.geometry.poni_text, "poni_file": "det.poni"}})
    path = f"series/{key}"
    refused = reprocess(client, path, masker="classical", root=root, progress=False)
    (run,) = refused.runs
    assert run.status == "failed" and run.processed == 0, run
    assert f"xrd-mask reprocess {path} --if-misoriented apply" in run.errors["run"]
    turned = reprocess(client, path, masker="classical", root=f"{root}_apply",
                       progress=False, if_misoriented="apply")
    assert turned.ok and turned.runs[0].processed == 2
    node = find_results(client, path, root=f"{root}_apply")
    assert node.metadata["geometry_check"]["orientation_applied"] == "flipud"
