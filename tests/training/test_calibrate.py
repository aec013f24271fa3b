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
