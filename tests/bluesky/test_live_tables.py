"""The tables of a live scan (RunEngine + TiledWriter + the masking callback, journaled, on a real
Tiled server): complete when the derived node is, and what `reprocess` writes for the run."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
from bluesky.plans import count

from xrd_bluesky_mask.reprocess import reprocess
from xrd_bluesky_mask.spots import COLUMNS, SUMMARY_COLUMNS, TEXTURE_COLUMNS
from xrd_bluesky_mask.tiled.results import find_results, load_patterns, load_tables

N_FRAMES = 30


def test_a_live_scans_tables_are_complete_with_it_and_equal_reprocessing(
        session, run_engine, tiled_server, make_det):
    det = make_det(presets=("rings_spots", "spots_po"), seed=29)
    with session.masking("classical", frame_timeout=20) as cb:
        result = run_engine(count([det], num=N_FRAMES), **det.start_metadata())
        assert session.stop_masking(120), "the callback did not finish"
    uid = result.run_start_uids[0]
    client = tiled_server.client()
    node = find_results(client, uid)
    assert node.metadata["status"] == "complete", node.metadata.get("errors")
    live = load_tables(client, uid)  # complete as soon as the status says so
    assert set(live) == {"spots", "frames", "texture"}
    frames, spots, texture = live["frames"], live["spots"], live["texture"]
    assert list(frames.columns) == list(SUMMARY_COLUMNS)
    assert list(spots.columns) == list(COLUMNS) and list(texture.columns) == list(TEXTURE_COLUMNS)
    assert list(frames["frame"]) == list(range(N_FRAMES))
    counts = spots.groupby("frame").size().reindex(range(N_FRAMES), fill_value=0)
    np.testing.assert_array_equal(frames["spot_count"], counts.values)
    assert frames["spot_count"].sum() > 0 and set(texture["frame"]) <= set(range(N_FRAMES))
    records = cb.records[uid].frames
    np.testing.assert_allclose(frames["masked_pct"], [100 * records[i].spot_fraction
                                                      for i in range(N_FRAMES)], rtol=1e-9)
    assert all("tables" in records[i].timings for i in range(N_FRAMES))
    # the similarity of each frame's stored pattern to the one before it
    patterns = load_patterns(client, uid).values
    sim = frames["similarity_to_previous"].to_numpy()
    assert np.isnan(sim[0])
    ok = np.isfinite(patterns[5]) & np.isfinite(patterns[4])
    assert sim[5] == np.corrcoef(patterns[5][ok], patterns[4][ok])[0, 1]
    assert node["spots"].metadata["units"]["two_theta_deg"] == "deg"

    root = f"derived/again_{uuid.uuid4().hex[:8]}"
    summary = reprocess(client, uid, masker="classical", root=root, progress=False)
    assert summary.ok
    again = load_tables(client, uid, root=root)
    for name in live:
        pd.testing.assert_frame_equal(again[name], live[name])


def test_tables_can_be_turned_off_for_a_live_scan(session, run_engine, tiled_server, make_det):
    """``tables=False``: masks and patterns alone (no table nodes, no table time per frame)."""
    det = make_det(presets=("rings_spots",), seed=31)
    with session.masking("classical", frame_timeout=20, tables=False) as cb:
        result = run_engine(count([det], num=3), **det.start_metadata())
        assert session.stop_masking(120), "the callback did not finish"
    uid = result.run_start_uids[0]
    client = tiled_server.client()
    node = find_results(client, uid)
    assert node.metadata["status"] == "complete", node.metadata.get("errors")
    assert all(len(t) == 0 for t in load_tables(client, uid).values())
    assert load_patterns(client, uid).shape[0] == 3 and node["mask"].read().any()
    assert all(r.timings["tables"] == 0.0 for r in cb.records[uid].frames.values())
