"""A frame's tables as one hand-off: computed with the mask, kept in the journal, assembled in
frame order with the similarity from the stored patterns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.pipeline.process import Pipeline
from xrd_bluesky_mask.sinks.journal import Journal
from xrd_bluesky_mask.spots import (
    COLUMNS,
    SUMMARY_COLUMNS,
    TEXTURE_COLUMNS,
    FrameTables,
    pattern_similarity,
    run_tables,
    tables_by_frame,
)

from ..masking.frames import ring_frame


def _centres(geometry, n_spots: int) -> list[tuple[int, int]]:
    rows, cols = geometry.shape
    return [(10 + (k * 37) % (rows - 20), 10 + (k * 53) % (cols - 20)) for k in range(n_spots)]


def _spotty(geometry, rng, n_spots: int) -> np.ndarray:
    spots = [(r, c, 1.2, 50_000.0) for r, c in _centres(geometry, n_spots)]
    frame, _ = ring_frame(geometry, rng, level=20.0, ring_peak=3000.0, width_deg=0.3,
                          po_strength=2.0, po_width_deg=15.0, spots=spots)
    return frame


@pytest.fixture(scope="module")
def results(small_geometry):
    """Three frames through a pipeline that computes tables (classical masker)."""
    rng = np.random.default_rng(4)
    frames = [_spotty(small_geometry, rng, n) for n in (4, 6, 8)]
    pipeline = Pipeline(get_masker("classical"), small_geometry, tables=True)
    return frames, pipeline.process(frames)


def test_the_pipeline_computes_a_frames_tables_with_its_mask(results, small_geometry):
    _, out = results
    for n, result in zip((4, 6, 8), out, strict=True):
        t = result.tables
        assert t is not None and result.timings["tables"] > 0
        assert list(t.spots.columns) == list(COLUMNS)
        assert list(t.texture.columns) == list(TEXTURE_COLUMNS)
        assert t.summary["spot_count"] == len(t.spots) > 0
        labelled = result.mask.spots & ~result.mask.static
        assert t.spots["area_px"].sum() == labelled.sum()
        assert np.isnan(t.summary["similarity_to_previous"])  # filled in frame order
        for r, c in _centres(small_geometry, n):  # every bright spot has its row
            d = np.hypot(t.spots["row_px"] - r, t.spots["col_px"] - c)
            assert d.min() < 1.0, (r, c)


def test_at_sets_the_frame_everywhere(results):
    t = results[1][1].tables.at(7)
    assert (t.spots["frame"] == 7).all() and (t.texture["frame"] == 7).all()
    assert t.summary["frame"] == 7
    assert (results[1][1].tables.spots["frame"] == 0).all()  # the original is unchanged


def test_tables_survive_the_journal_on_disk(results, tmp_path):
    _, out = results
    journal = Journal(tmp_path / "j")
    tables = out[1].tables.at(5)
    journal.append_write("run", 5, out[1].mask.codes, out[1].pattern, tables)
    journal.append_write("run", 6, out[2].mask.codes, out[2].pattern)  # no tables
    journal.release()
    again = Journal(tmp_path / "j")  # a restarted process: read from the files
    (first, second) = list(again.ops)
    _, _, kept = again.load(first)
    pd.testing.assert_frame_equal(kept.spots, tables.spots)
    pd.testing.assert_frame_equal(kept.texture, tables.texture)
    assert kept.summary.keys() == tables.summary.keys()
    assert np.isnan(kept.summary["similarity_to_previous"])
    assert again.load(second)[2] is None
    again.release()


def test_run_tables_sort_frames_and_compare_each_with_the_one_before(results):
    _, out = results
    by_frame = {i: r.tables.at(i) for i, r in zip((2, 0, 1), out, strict=True)}
    rows = {i: np.asarray(r.pattern.values, np.float32)
            for i, r in zip((2, 0, 1), out, strict=True)}
    del rows[1]  # frame 1's pattern unknown: its and frame 2's similarity are NaN
    tables = run_tables(by_frame, rows)
    frames = tables["frames"]
    assert list(frames.columns) == list(SUMMARY_COLUMNS)
    assert list(frames["frame"]) == [0, 1, 2]
    assert frames["frame"].dtype == np.int64 and frames["spot_count"].dtype == np.int64
    assert frames["similarity_to_previous"].isna().all()
    rows[1] = np.asarray(out[2].pattern.values, np.float32)
    frames = run_tables(by_frame, rows)["frames"]
    assert np.isnan(frames["similarity_to_previous"].iloc[0])
    assert frames["similarity_to_previous"].iloc[1] == pytest.approx(
        pattern_similarity(rows[1], rows[0]))
    assert list(tables["spots"]["frame"]) == sorted(tables["spots"]["frame"])
    assert len(tables["spots"]) == sum(len(t.spots) for t in by_frame.values())


def test_stored_tables_split_back_into_frames(results):
    _, out = results
    by_frame = {i: r.tables.at(i) for i, r in enumerate(out)}
    stored = run_tables(by_frame)
    back = tables_by_frame(stored)
    assert sorted(back) == [0, 1, 2]
    again = run_tables(back)
    for name in stored:
        pd.testing.assert_frame_equal(again[name], stored[name])


def test_a_frame_without_spots_has_typed_empty_tables():
    empty = run_tables({})
    assert len(empty["spots"]) == 0 and empty["spots"]["area_px"].dtype == np.int64
    assert list(empty["texture"].columns) == list(TEXTURE_COLUMNS)
    assert FrameTables.from_arrays({}) is None
