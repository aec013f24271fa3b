"""The live view of spot count, masked share and texture index against frame, fed by result
documents as a Bluesky callback; and the same panels on the PNGs (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from xrd_bluesky_mask.apps.live_view import LiveSpotView  # noqa: E402
from xrd_bluesky_mask.apps.plotting import (  # noqa: E402
    PANELS,
    draw_frame_panels,
    draw_ring_panels,
    save_overlay,
)
from xrd_bluesky_mask.bluesky.result_docs import ResultDocuments  # noqa: E402

ROWS = [{"frame": i, "spot_count": 10 + i, "masked_pct": 0.1 * (i + 1),
         "texture_index": 0.5 - 0.1 * i} for i in range(4)]


def _lines(ax):
    return [(line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.get_lines()]


def test_the_view_draws_each_frame_as_its_event_arrives(tmp_path):
    view = LiveSpotView()
    emitter = ResultDocuments()
    emitter.subscribe(view)
    try:
        assert [ax.get_ylabel() for ax in view.axes] == [label for _, label in PANELS]
        for row in ROWS[:2]:
            emitter("run-one-uid", row["frame"], row)
        (label, x, y), = _lines(view.axes[0])
        assert (label, x, y) == ("run run-one-", [0, 1], [10, 11])  # drawn with no stop yet
        for row in ROWS[2:]:
            emitter("run-one-uid", row["frame"], row)
        emitter("run-one-uid", None, {"status": "complete"})
        for ax, (column, _) in zip(view.axes, PANELS, strict=True):
            (_, x, y), = _lines(ax)
            assert x == [0, 1, 2, 3]
            np.testing.assert_allclose(y, [r[column] for r in ROWS])
        emitter("run-two-uid", 0, ROWS[0])  # a second scan: a second line, the first greyed
        first, second = _lines(view.axes[1])
        assert first[0] == "run run-one-" and second == ("run run-two-", [0], [0.1])
        png = view.save(tmp_path / "spots.png")
        assert matplotlib.image.imread(png).shape[:2] == (600, 600)
    finally:
        plt.close(view.fig)


def test_the_view_keeps_the_last_runs_only():
    view = LiveSpotView(max_runs=2)
    emitter = ResultDocuments()
    emitter.subscribe(view)
    try:
        for run in ("a", "b", "c"):
            emitter(run, 0, ROWS[0])
        assert list(view.rows) == ["b", "c"]
        assert [line.get_label() for line in view.axes[2].get_lines()] == ["run b", "run c"]
    finally:
        plt.close(view.fig)


def test_frame_panels_sort_by_frame_and_take_a_frames_table():
    fig, axes = plt.subplots(3, 1)
    try:
        table = pd.DataFrame(ROWS[::-1])  # a stored table need not be in frame order
        draw_frame_panels(axes, {"abc": table})
        (_, x, y), = _lines(axes[2])
        assert x == [0, 1, 2, 3]
        np.testing.assert_allclose(y, [0.5, 0.4, 0.3, 0.2])
        assert axes[-1].get_xlabel() == "frame"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("extra", ["summary", "rings", None])
def test_the_overlay_gains_a_column_for_the_tables(tmp_path, small_geometry, extra):
    from xrd_bluesky_mask.masking import get_masker
    from xrd_bluesky_mask.pipeline import process_frame
    from xrd_bluesky_mask.simulate import simulate_frame

    sim = simulate_frame("rings_spots", seed=3, shape=(256, 256))
    res = process_frame(sim.image, sim.geometry, get_masker("classical"), tables=True)
    kwargs = {"summary": {"abc": pd.DataFrame(ROWS)}} if extra == "summary" else \
        {"rings": res.tables} if extra == "rings" else {}
    png = save_overlay(tmp_path / "o.png", sim.image, res.mask.spots, static=res.mask.static,
                       patterns={"masked": res.pattern}, **kwargs)
    width = matplotlib.image.imread(png).shape[1]
    assert width == (4 if extra else 3) * 6 * 110


def test_ring_panels_count_the_spots_and_show_each_rings_texture():
    from xrd_bluesky_mask.masking import get_masker
    from xrd_bluesky_mask.pipeline import process_frame
    from xrd_bluesky_mask.simulate import simulate_frame

    sim = simulate_frame("spots_po", seed=4, shape=(256, 256))
    tables = process_frame(sim.image, sim.geometry, get_masker("classical"), tables=True).tables
    assert tables is not None and len(tables.spots) > 0 and len(tables.texture) > 0
    fig, axes = plt.subplots(2, 1)
    try:
        draw_ring_panels(axes, tables, np.linspace(0, 90, 91))
        (stairs,) = axes[0].patches  # the histogram of spots per 2θ bin
        assert int(round(stairs.get_data().values.sum())) == len(tables.spots)
        markers = axes[1].containers[0].markerline
        np.testing.assert_allclose(markers.get_xdata(), tables.texture["two_theta_deg"])
        np.testing.assert_allclose(markers.get_ydata(), tables.texture["texture_index"])
        assert f"{int(tables.summary['spot_count'])} spots" in axes[0].get_title()
    finally:
        plt.close(fig)
