"""The release gate: a candidate that is worse on any specificity figure never passes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xrd_bluesky_mask.apps.evaluate import ORACLE, evaluate, heldout_cases, simulate_case
from xrd_bluesky_mask.apps.release_gate import release_gate
from xrd_bluesky_mask.errors import ConfigError
from xrd_bluesky_mask.masking.classical import RingOutlierMasker

SIZE = 384


@pytest.fixture(scope="module")
def scored():
    """One frame of each preset and spot-free negative group, scored with no mask, the
    ground truth and a per-ring outlier filter (which masks PO bands and rings' grains)."""
    report = evaluate({"none": None, "truth": ORACLE, "ring filter": RingOutlierMasker()},
                      size=SIZE, frames_per_set=5, sets=("presets", "negatives"),
                      progress=False)
    return json.loads(json.dumps({"summary": report.summary(), "rows": report.rows},
                                 default=float))


def _as(data: dict, masker: str) -> dict:
    """``data`` with ``masker``'s figures under the name ``unet``."""
    return {"rows": data["rows"],
            "summary": {g: {"unet": by[masker]} for g, by in data["summary"].items()}}


def test_negative_groups_are_spot_free_and_what_they_say():
    cases = heldout_cases(5, ("negatives",))
    assert [c.style for c in cases] == ["sharp_rings", "sharp_rings_int", "po_sharp",
                                        "grainy_high", "grainy_low"]
    sims = {c.style: simulate_case(c, 256) for c in cases}
    assert not any(s.labels.any() for s in sims.values())
    assert np.array_equal(sims["sharp_rings_int"].image, np.round(sims["sharp_rings_int"].image))
    assert sims["po_sharp"].config.po.enabled and sims["po_sharp"].config.po.strength >= 30
    assert sims["grainy_low"].config.flux <= 300 <= 1e4 <= sims["grainy_high"].config.flux


def test_a_candidate_that_finds_more_but_masks_powder_is_refused(scored):
    result = release_gate(_as(scored, "ring filter"), _as(scored, "none"))
    assert not result.passed
    worse = {(c.group, c.figure) for c in result.worse}
    assert any(f == "worst_masked_pct" and g.startswith("negatives/") for g, f in worse)
    assert result.recall_better  # it does find spots: refused for what it cuts
    assert "REFUSED" in result.markdown() and "negatives/" in " ".join(result.reasons())


def test_a_candidate_no_worse_anywhere_and_better_on_recall_passes(scored):
    result = release_gate(_as(scored, "truth"), _as(scored, "ring filter"))
    assert result.passed, result.reasons()
    assert not release_gate(_as(scored, "none"), _as(scored, "none")).passed  # recall not better
    spot_free = [t for t in result.targets if t[1] == "worst_masked_pct"]
    assert {g for g, *_ in spot_free} >= {"negatives/po_sharp", "negatives/grainy_low"}
    assert all(v == 0 for _, _, v, _ in spot_free)


def test_evaluations_of_other_frames_are_not_compared(scored):
    other = json.loads(json.dumps(scored))
    for r in other["rows"]:
        r["seed"] += 1
    with pytest.raises(ConfigError, match="other frames"):
        release_gate(_as(other, "truth"), _as(scored, "none"))


def test_a_gate_that_did_not_see_every_group_refuses_to_judge(scored):
    """Three frames per set skip the grainy spot-free groups: the gate says so, not passes."""
    short = json.loads(json.dumps(scored))
    short["rows"] = [r for r in short["rows"] if not r["style"].startswith("grainy")]
    with pytest.raises(ConfigError, match="negatives/grainy_high, negatives/grainy_low.*"
                                          "--frames-per-set 5"):
        release_gate(_as(scored, "truth"), _as(short, "ring filter"))
    with pytest.raises(ConfigError, match="negatives/grainy_high"):
        release_gate(_as(short, "truth"), _as(scored, "ring filter"))
