"""TiledResultSink layout and the find/load helpers, read back with fresh and plain clients."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import xarray as xr

from xrd_bluesky_mask.protocols import MaskCode
from xrd_bluesky_mask.protocols import encode_mask as mask_codes
from xrd_bluesky_mask.provenance import provenance
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.tiled.results import find_results, load_masks, load_patterns

H, W, BINS = 12, 10, 32


def _pattern(i: int) -> xr.DataArray:
    tth = np.linspace(1, 30, BINS)
    return xr.DataArray(
        np.full(BINS, 10.0 + i), dims=("radial",), name="intensity",
        coords={"two_theta": ("radial", tth, {"units": "deg"}),
                "q": ("radial", tth / 10, {"units": "1/Å"}),
                "sigma": ("radial", np.full(BINS, 0.5 + i))},
        attrs={"units": "counts", "radial_unit": "2th_deg", "masked_fraction": 0.1},
    )


def _codes(i: int) -> np.ndarray:
    spots = np.zeros((H, W), bool)
    spots[i, :3] = True
    static = np.zeros((H, W), bool)
    static[-1, -1] = True
    return mask_codes(spots, static)


def _metadata(uid: str, expected: int | None) -> dict:
    return provenance(uid, stream="primary", field="det", poni="Distance: 0.1\n",
                      masker_settings={"masker": "classical", "n_sigma": 3.0},
                      integration={"npt": BINS}, frames_expected=expected, frame_shape=(H, W))


def test_sink_layout_out_of_order_and_beyond_expected(tiled_server):
    uid = str(uuid.uuid4())
    sink = TiledResultSink(tiled_server.client())
    sink.open_run(uid, _metadata(uid, expected=3))
    for i in (2, 0, 4):  # out of order, and one past the announced 3 frames
        sink.write(uid, i, _codes(i), _pattern(i))
    sink.close_run(uid, "complete_with_errors", {1: "FrameError: empty", 3: "boom"})

    fresh = tiled_server.client()
    node = fresh[f"derived/xrd_mask/{uid}"]
    assert "XRDMask" in [getattr(s, "name", s) for s in node.specs]
    md = node.metadata
    assert md["status"] == "complete_with_errors"
    assert md["frames_done"] == [0, 2, 4] and md["n_frames_done"] == 3
    assert md["errors"] == {"1": "FrameError: empty", "3": "boom"}
    assert md["schema_version"] == 2 and md["source_uid"] == uid
    assert md["result_version"] == 1 and len(md["settings_id"]) == 16
    assert {"masker", "poni", "integration", "versions", "stream", "field"} <= set(md)
    assert "xrd_bluesky_mask" in md["versions"] and "tiled" in md["versions"]

    mask = node["mask"]
    assert mask.dtype == np.uint8 and mask.shape == (5, H, W)
    assert mask.dims == ("frame", "y", "x") and set(mask.chunks[0]) == {1}
    for i in (0, 2, 4):
        np.testing.assert_array_equal(mask[i], _codes(i))
    # never computed: code 3, NaN patterns, so no reader takes them for spot-free results
    assert (mask[1] == MaskCode.NOT_COMPUTED).all() and (mask[3] == MaskCode.NOT_COMPUTED).all()
    assert node.metadata["mask_codes"]["3"] == "not computed"

    ds = node["pattern"].read()
    assert ds["intensity"].dims == ("frame", "radial") and ds["intensity"].dtype == np.float32
    assert ds["two_theta"].attrs["units"] == "deg" and ds["q"].attrs["units"] == "1/Å"
    np.testing.assert_allclose(ds["intensity"][4], 14.0)
    np.testing.assert_allclose(ds["sigma"][2], 2.5)
    assert np.isnan(ds["intensity"][[1, 3]]).all() and np.isnan(ds["sigma"][[1, 3]]).all()

    pats = load_patterns(fresh, uid)
    assert list(pats["frame"].values) == [0, 2, 4]
    np.testing.assert_allclose(pats.sel(frame=2).values, 12.0)
    np.testing.assert_allclose(pats["two_theta"], _pattern(0)["two_theta"])
    assert load_masks(fresh, uid).shape == (5, H, W)


def test_arrays_hold_the_frames_that_exist(tiled_server):
    """A scan announcing 30 frames and stopped after 4 (the last one failed): 4 rows, not 30,
    and the failed one reads "not computed"; a frame written twice leaves one row."""
    uid = str(uuid.uuid4())
    sink = TiledResultSink(tiled_server.client())
    sink.open_run(uid, _metadata(uid, expected=30))
    for i in (0, 1, 2, 2):
        sink.write(uid, i, _codes(i), _pattern(i))
    sink.annotate(uid, {"n_frames": 4, "scan_exit_status": "abort"})
    sink.close_run(uid, "aborted", {3: "boom"})
    node = tiled_server.client()[f"derived/xrd_mask/{uid}"]
    assert node["mask"].shape == (4, H, W)
    assert node["pattern"]["intensity"].shape == (4, BINS)
    masks = node["mask"][:]
    np.testing.assert_array_equal(masks[2], _codes(2))
    assert (masks[3] == MaskCode.NOT_COMPUTED).all()
    assert np.isnan(node["pattern"]["intensity"][3]).all()
    md = node.metadata
    assert md["status"] == "aborted" and md["scan_exit_status"] == "abort"
    assert md["frames_done"] == [0, 1, 2] and md["n_frames"] == 4


def test_unknown_length_and_resume(tiled_server):
    uid = str(uuid.uuid4())
    sink = TiledResultSink(tiled_server.client(), progress_interval=0.0)
    sink.open_run(uid, _metadata(uid, expected=None))
    sink.write(uid, 0, _codes(0), _pattern(0))
    assert tiled_server.client()[f"derived/xrd_mask/{uid}"].metadata["frames_done"] == [0]
    sink.write(uid, 1, _codes(1), _pattern(1))
    sink.close_run(uid, "complete", {})
    again = TiledResultSink(tiled_server.client())  # e.g. a restarted worker
    again.open_run(uid, _metadata(uid, expected=None))
    again.write(uid, 2, _codes(2), _pattern(2))
    again.close_run(uid, "complete", {})
    node = find_results(tiled_server.client(), uid)
    assert node.metadata["frames_done"] == [0, 1, 2]
    assert node["mask"].shape == (3, H, W)


def test_find_results_by_search_under_a_custom_root(tiled_server):
    uid = str(uuid.uuid4())
    sink = TiledResultSink(tiled_server.client(), root="elsewhere/masks")
    sink.open_run(uid, _metadata(uid, expected=1))
    sink.write(uid, 0, _codes(0), _pattern(0))
    sink.close_run(uid, "complete", {})
    node = find_results(tiled_server.client(), uid)  # not under the default root: search_deep
    assert node.metadata["source_uid"] == uid
    assert find_results(tiled_server.client(), uid, root="elsewhere/masks")["mask"].shape[0] == 1
    with pytest.raises(KeyError, match="no xrd_mask results for nope"):
        find_results(tiled_server.client(), "nope")


def test_plain_tiled_client_reads_results(tiled_server):
    """Only tiled's own API: no helper, no client class registered for the XRDMask spec."""
    from tiled.client import from_uri
    from tiled.queries import Key

    uid = str(uuid.uuid4())
    sink = TiledResultSink(tiled_server.client())
    sink.open_run(uid, _metadata(uid, expected=2))
    for i in range(2):
        sink.write(uid, i, _codes(i), _pattern(i))
    sink.close_run(uid, "complete", {})
    c = from_uri(tiled_server.uri, api_key=tiled_server.api_key)
    ((path, node),) = c.search_deep(Key("source_uid") == uid).items()
    assert path == ("derived", "xrd_mask", uid)
    assert int(node["mask"][:].sum()) == sum(int(_codes(i).sum()) for i in range(2))
    ds = node["pattern"].read()
    assert isinstance(ds, xr.Dataset)
    assert sorted(ds.data_vars) == ["intensity", "sigma"]
    assert sorted(ds.coords) == ["q", "two_theta"]


def test_finished_sources_are_those_with_a_final_status_and_these_settings(tiled_server):
    from xrd_bluesky_mask.tiled.results import finished_sources

    root = f"finished/{uuid.uuid4().hex[:8]}"
    sink = TiledResultSink(tiled_server.client(), root=root)
    done, running, other = (str(uuid.uuid4()) for _ in range(3))
    for uid, status in ((done, "complete"), (running, None), (other, "complete")):
        md = _metadata(uid, expected=1)
        if uid == other:  # another masker threshold: not this recipe's result
            md = provenance(uid, stream="primary", field="det", poni="Distance: 0.1\n",
                            masker_settings={"masker": "classical", "n_sigma": 5.0},
                            integration={"npt": BINS})
        sink.open_run(uid, md)
        sink.write(uid, 0, _codes(0), _pattern(0))
        if status:
            sink.close_run(uid, status, {})  # `running` stays open: not finished
    masker = {"masker": "classical", "n_sigma": 3.0, "device": "cuda"}  # device aside
    assert finished_sources(tiled_server.client(), masker, {"npt": BINS}, root=root) == {done}
    assert finished_sources(tiled_server.client(), masker, {"npt": BINS},
                            root="finished/none") == set()
