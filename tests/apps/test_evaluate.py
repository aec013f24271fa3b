"""Held-out evaluation: metrics that tell a good mask from a bad one."""

from __future__ import annotations

import numpy as np

from xrd_bluesky_mask.apps.evaluate import (
    Case,
    clear_spot_ids,
    evaluate,
    heldout_cases,
    po_area_error,
    score,
)
from xrd_bluesky_mask.azimuthal import integrate
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.masking.preprocess import prepare_frame
from xrd_bluesky_mask.protocols import MaskResult
from xrd_bluesky_mask.simulate import preset, simulate_frame
from xrd_bluesky_mask.simulate.presets import HELD_OUT_PHASES
from xrd_bluesky_mask.training.simulated import simulated_tiles


class Oracle:
    """Masks exactly the simulator's labels: the best any masker can do."""

    name = "oracle"

    def __init__(self, sim):
        self.sim = sim

    def settings(self):
        return {"masker": self.name}

    def predict(self, frame, geometry, extra_static=None):
        _, static = prepare_frame(frame, geometry, extra_static=extra_static)
        return MaskResult(spots=self.sim.labels & ~static, static=static)


def test_heldout_cases_are_not_training_seeds():
    cases = heldout_cases(5)
    assert {c.set_name for c in cases} == {"presets", "transfer", "shapes", "negatives"}
    assert len(cases) == 20
    assert min(c.seed for c in cases) >= 1_000_000
    assert len({c.seed for c in cases}) == len(cases)
    shapes = {c.style for c in cases if c.set_name == "shapes"}
    assert shapes == {"streaks", "heavy_tails", "edges", "extreme_pixels", "negative_texture"}
    assert {c.set_name for c in heldout_cases(1, ("presets",))} == {"presets"}


def test_spot_recall_by_distance_to_the_edge():
    from xrd_bluesky_mask.apps.evaluate import edge_spot_counts
    from xrd_bluesky_mask.metrics import spot_found

    cfg = preset("rings_spots", shape=(512, 512), spots={"count": 0, "fixed": [
        {"row": 5.0, "col": 250.0, "size_px": 3.0, "peak_rel": 50.0},
        {"row": 250.0, "col": 260.0, "size_px": 3.0, "peak_rel": 50.0}]})
    sim = simulate_frame(cfg, seed=1)
    valid = ~sim.static_mask
    near_only = np.zeros_like(sim.labels)
    near_only[:40] = sim.labels[:40]
    counts = edge_spot_counts(sim, spot_found(near_only, sim.spot_ids, valid))
    assert counts["0-16"] == (1, 1) and counts[">256"] == (0, 0) and counts["64-256"] == (0, 1)


def test_oracle_beats_no_mask_and_classical_loses_po_area():
    sim = simulate_frame(preset("spots_po", shape=(512, 512)), seed=3)
    _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    truth = integrate(sim.spot_free, sim.geometry, mask=static)
    oracle = score(sim, Oracle(sim), truth, None)
    none = score(sim, None, truth, None)
    classical = score(sim, RingOutlierMasker(), truth, None)
    assert oracle["fn"] == 0 and oracle["fp"] == 0 and oracle["spots_found"] == oracle["spots"]
    assert oracle["rwp"] < none["rwp"]
    assert none["tp"] == 0 and none["masked_pct"] == 0
    # the conventional filter eats the PO bands: a large peak-area error on PO rings
    assert classical["po_area_error"] > 3 * oracle["po_area_error"]
    assert np.isnan(po_area_error(truth, truth, simulate_frame(preset("perfect",
                                                                     shape=(256, 256)))))


def test_evaluate_report_tables(monkeypatch):
    import xrd_bluesky_mask.apps.evaluate as ev

    monkeypatch.setattr(ev, "heldout_cases",
                        lambda n, sets: [Case("presets", "spots_po", 1_000_000),
                                         Case("transfer", "rings_spots", 1_000_500),
                                         Case("shapes", "streaks", 1_001_000)])
    report = evaluate({"classical": RingOutlierMasker(), "none": None}, size=384,
                      frames_per_set=1, progress=False)
    summary = report.summary()
    assert {"overall", "presets", "transfer", "shapes/streaks"} <= set(summary)
    by_edge = [v for k, v in summary["overall"]["classical"].items()
               if k.startswith("spot_recall_edge_") and np.isfinite(v)]
    assert by_edge and all(0 <= v <= 1 for v in by_edge)
    assert "| classical |" in report.edge_markdown()
    assert summary["overall"]["none"]["recall"] == 0.0
    assert summary["overall"]["classical"]["recall"] > 0.3
    md = report.markdown()
    assert md.count("\n") == 1 + 2 * len(summary) and "| overall | classical |" in md


def test_training_scenes_never_use_held_out_phases():
    names = set()
    import xrd_bluesky_mask.simulate as simulate

    orig = simulate.random_scene

    def spy(*a, **kw):
        cfg = orig(*a, **kw)
        names.update(p.name for p in cfg.phases)
        return cfg

    simulate.random_scene = spy
    try:
        simulated_tiles(6, shape=(256, 256), seed=5, progress=False)
    finally:
        simulate.random_scene = orig
    assert names and not names & set(HELD_OUT_PHASES)


def test_clear_spots_are_the_bright_subset():
    sim = simulate_frame(preset("rings_spots", shape=(512, 512)), seed=5)
    clear = clear_spot_ids(sim)
    assert 0 < len(clear) <= len(sim.spots)
    peaks = {s.spot_id: s.peak_counts for s in sim.spots}
    assert len(clear_spot_ids(sim, nsigma=1000.0)) <= len(clear)
    # every clear spot is brighter than the faintest spot left out at the same level of noise
    assert min(peaks[i] for i in clear) > 0
    _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    truth = integrate(sim.spot_free, sim.geometry, mask=static)
    oracle = score(sim, Oracle(sim), truth, None)
    assert oracle["clear_spots_found"] == oracle["clear_spots"] == len(
        set(clear) & set(np.unique(sim.spot_ids[~static])))


def test_oracle_masker_scores_the_labels():
    from xrd_bluesky_mask.apps.evaluate import ORACLE

    sim = simulate_frame(preset("rings_spots", shape=(384, 384)), seed=8)
    _, static = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    truth = integrate(sim.spot_free, sim.geometry, mask=static)
    by_name = score(sim, ORACLE, truth, None)
    by_class = score(sim, Oracle(sim), truth, None)
    assert by_name["fn"] == by_name["fp"] == 0 and by_name["tp"] > 0
    assert by_name["rwp"] == by_class["rwp"]
