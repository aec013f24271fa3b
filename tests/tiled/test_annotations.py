"""Annotations in Tiled: layout, merging, promotion of predicted masks, queries, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from bluesky.plans import count

from xrd_bluesky_mask.errors import AnnotationError, FrameError
from xrd_bluesky_mask.protocols import MaskCode
from xrd_bluesky_mask.tiled.annotate import accept_masks, annotate_run
from xrd_bluesky_mask.tiled.annotations import (
    annotated_runs,
    find_annotations,
    load_annotations,
    read_annotated_frames,
)
from xrd_bluesky_mask.tiled.results import find_results, load_masks

SHAPE = (96, 96)


def _scan(RE, det, num):
    """``count([det], num)``, written to Tiled by the session's TiledWriter; the run uid."""
    return RE(count([det], num=num), **det.start_metadata()).run_start_uids[0]


@pytest.fixture(scope="module")
def run4(session):
    """A 4-frame run of 96 x 96 frames in Tiled."""
    det = session.add_detector(shape=SHAPE, presets="rings_spots", seed=11)
    return _scan(session.RE, det, 4), det


def test_annotate_layout_merge_and_plain_client(run4, tiled_server, monkeypatch, rng):
    uid, det = run4
    client = tiled_server.client()
    monkeypatch.setenv("USER", "beamline-staff")
    spots = rng.random((2, *SHAPE)) > 0.99
    annotate_run(client, uid, spots, frames=[1, 3])

    from tiled.client import from_uri
    from tiled.queries import Key

    plain = from_uri(tiled_server.uri, api_key=tiled_server.api_key)  # no helper needed
    node = plain[f"derived/xrd_annotations/{uid}"]
    assert "XRDMaskAnnotation" in [getattr(s, "name", s) for s in node.specs]
    md = node.metadata
    assert md["source_uid"] == uid and md["frames"] == [1, 3] and md["n_frames_annotated"] == 2
    assert md["annotator"] == "beamline-staff" and md["source_model"] is None
    assert md["n_frames"] == 4 and md["frame_shape_px"] == list(SHAPE) and md["field"] == "det"
    assert md["poni"] == det.generator.poni_text and md["created"].endswith("+00:00")
    assert md["spot_px"] == {"1": int(spots[0].sum()), "3": int(spots[1].sum())}
    mask = node["mask"]
    assert mask.dtype == np.uint8 and mask.shape == (4, *SHAPE)
    assert mask.dims == ("frame", "y", "x")
    np.testing.assert_array_equal(mask[1], spots[0].astype(np.uint8))
    np.testing.assert_array_equal(mask[3], spots[1].astype(np.uint8))
    assert (mask[0] == MaskCode.NOT_ANNOTATED).all() and (mask[2] == MaskCode.NOT_ANNOTATED).all()
    hits = plain.search_deep(Key("source_uid") == uid)
    assert ("derived", "xrd_annotations", uid) in set(hits.keys())

    # more frames later, by someone else, with codes (2 static, 255 left open): merged
    codes = np.zeros(SHAPE, np.uint8)
    codes[:5] = 2
    codes[-5:] = MaskCode.NOT_ANNOTATED
    codes[40:44, 40:44] = 1
    annotate_run(client, uid, codes, frames=[0], annotator="second")
    ann = load_annotations(client, uid)
    assert ann.frames == [0, 1, 3] and ann.codes.shape == (3, *SHAPE)
    np.testing.assert_array_equal(ann.codes[0], codes)
    md = find_annotations(client, uid).metadata
    assert md["frame_info"]["0"]["annotator"] == "second"
    assert md["frame_info"]["1"]["annotator"] == "beamline-staff"
    frames = read_annotated_frames(client, ann)
    assert [f.shape for f in frames] == [SHAPE] * 3
    np.testing.assert_array_equal(frames[1], det.generator.frame(1))
    assert uid in annotated_runs(client)


def test_annotations_that_do_not_fit_are_refused(run4, tiled_server):
    uid, _ = run4
    client = tiled_server.client()
    with pytest.raises(AnnotationError, match="do not fit the run's frames of 96x96"):
        annotate_run(client, uid, np.zeros((1, 64, 64), bool))
    with pytest.raises(AnnotationError, match=r"frames \[7\] are not in run"):
        annotate_run(client, uid, np.zeros((1, *SHAPE), bool), frames=[7])
    with pytest.raises(AnnotationError, match="not annotation codes"):
        annotate_run(client, uid, np.full((1, *SHAPE), 7, np.uint8))
    with pytest.raises(AnnotationError, match="one distinct frame index per mask"):
        annotate_run(client, uid, np.zeros((2, *SHAPE), bool), frames=[0, 0])
    with pytest.raises(AnnotationError, match="is not in"):
        annotate_run(client, "no-such-run", np.zeros((1, *SHAPE), bool))
    with pytest.raises(AnnotationError, match="has no annotations"):
        find_annotations(client, "no-such-run")
    assert "no-such-run" not in annotated_runs(client)


def test_accept_predicted_masks_with_edits(session, run_engine, tiled_server, make_det,
                                           tiny_model_dir):
    client = tiled_server.client()
    det = make_det(presets="rings_spots", seed=12)
    with session.masking("unet", frame_timeout=20, quiet_s=0) as cb:
        cb.set_model(tiny_model_dir)  # a model with an id and a checksum to record
        uid = _scan(run_engine, det, 3)
        assert session.stop_masking(60)
    predicted = load_masks(client, uid)
    results = find_results(client, uid).metadata
    assert results["model_id"] == "tiny-untrained"

    edit = np.zeros(SHAPE, bool)
    edit[10:20, 10:20] = True
    with pytest.raises(FrameError, match=r"edits for frames \[2\]"):
        accept_masks(client, uid, [0], edits={2: edit})
    accept_masks(client, uid, [0, 2], edits={2: edit}, annotator="checker")
    ann = load_annotations(client, uid)
    assert ann.frames == [0, 2]
    np.testing.assert_array_equal(ann.codes[0], predicted[0])  # 0/1/2 codes kept
    np.testing.assert_array_equal(ann.codes[1], edit.astype(np.uint8))
    md = ann.metadata
    assert md["source_model"] == {"model_id": "tiny-untrained",
                                  "sha256": results["model_sha256"]}
    assert md["annotator"] == "checker" and md["frame_info"]["2"]["source_model"]["model_id"]

    # a run whose results lack a frame: that frame cannot be accepted
    with pytest.raises(FrameError, match=r"frames \[5\] .* have no predicted mask"):
        accept_masks(client, uid, [5])
