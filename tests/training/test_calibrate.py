"""Threshold calibration on whole frames writes the card and keeps the weights."""

import shutil

import pytest

from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.models import DEFAULT_MODEL_DIR
from xrd_bluesky_mask.models.store import load_model, read_card
from xrd_bluesky_mask.training.calibrate import calibrate_threshold


@pytest.fixture
def model(tmp_path):
    return shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")


def test_threshold_follows_the_target_tnr(model):
    loose = calibrate_threshold(model, frames=2, size=256, target_tnr=0.99, progress=False)
    tight = calibrate_threshold(model, frames=2, size=256, target_tnr=0.9999, progress=False)
    assert loose["threshold"] < tight["threshold"]
    assert loose["recall"] >= tight["recall"]
    assert abs(loose["tnr"] - 0.99) < 2e-3


def test_cli_writes_threshold_and_keeps_checksum(model, capsys):
    before = read_card(model)
    assert main(["calibrate", str(model), "--frames", "2", "--size", "256",
                 "--target-tnr", "0.99"]) == 0
    after = read_card(model)
    assert after.threshold != before.threshold
    assert after.sha256 == before.sha256
    assert after.metrics["calibration"]["target_tnr"] == 0.99
    assert load_model(model).card.threshold == after.threshold  # checksum still verifies
    assert "threshold" in capsys.readouterr().out


def test_decision_step_is_calibrated_with_the_threshold(model, capsys):
    """The TNR is that of the final mask: a rule that adds spots needs a higher threshold
    for the same target, and the CLI writes rule and threshold together."""
    from xrd_bluesky_mask.masking.decision import DecisionRule

    rule = DecisionRule(grow_z=2.0, grow_px=12)
    plain = calibrate_threshold(model, frames=2, size=256, target_tnr=0.995,
                                decision=DecisionRule.off(), progress=False)
    ruled = calibrate_threshold(model, frames=2, size=256, target_tnr=0.995, decision=rule,
                                progress=False)
    assert plain["decision"] == "off" and ruled["decision"] == rule.to_dict()
    assert ruled["tnr"] >= 0.995 and ruled["threshold"] >= plain["threshold"]
    assert main(["calibrate", str(model), "--frames", "2", "--size", "256", "--target-tnr",
                 "0.995", "--decision", "grow_z=2,grow_px=12"]) == 0
    assert read_card(model).decision == rule.to_dict()
    assert "grow_z" in capsys.readouterr().out
    assert main(["calibrate", str(model), "--frames", "2", "--size", "256", "--target-tnr",
                 "0.995", "--decision", "off"]) == 0
    assert read_card(model).decision == {}
    assert main(["calibrate", str(model), "--decision", "grow_z=fast"]) != 0
    assert "give card, off or fields of the decision rule" in capsys.readouterr().err


def test_a_spot_free_bound_keeps_every_style_within_the_reference(model, capsys):
    """Calibrated against the packaged default, the model masks no more pixels than it on
    any spot-free style; the threshold only rises for it, and recall is that of the final
    threshold. The CLI prints both counts per style and writes them to the card."""
    plain = calibrate_threshold(model, frames=2, size=256, target_tnr=0.99, progress=False)
    bound = calibrate_threshold(model, frames=2, size=256, target_tnr=0.99,
                                spot_free_against="default", progress=False)
    styles = bound["spot_free"]["styles"]
    assert set(styles) == {"sharp_rings", "sharp_rings_int", "po_sharp", "grainy_high",
                           "grainy_low"}
    assert all(v["masked_px"] <= v["against_px"] for v in styles.values())
    assert sum(v["against_px"] for v in styles.values()) > 0  # the bound had something to say
    # the same weights held against themselves: the bound lands at the reference's own
    # threshold, far above the one the loose TNR asked for, and recall falls with it
    reference = read_card(DEFAULT_MODEL_DIR).threshold
    assert plain["threshold"] < bound["threshold"] <= reference + 1e-3
    assert bound["recall"] < plain["recall"] and bound["tnr"] >= plain["tnr"]
    assert main(["calibrate", str(model), "--frames", "2", "--size", "256", "--target-tnr",
                 "0.99", "--spot-free-against", "default"]) == 0
    assert "grainy_low" in capsys.readouterr().out
    assert read_card(model).metrics["calibration"]["spot_free"]["against"] == "default"

