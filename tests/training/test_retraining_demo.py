"""benchmarks/retraining_demo.py: its table, its verdicts and one tiny run end to end."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from xrd_bluesky_mask.models.store import DEFAULT_MODEL_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("retraining_demo",
                                                  ROOT / "benchmarks" / "retraining_demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["retraining_demo"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_change_the_bad_way_beyond_the_tolerance_is_worse(demo):
    recall = demo.Row("g", 2, "spot recall", 0.80, 0.78, True, 0.01, False)
    assert recall.change == pytest.approx(-0.02) and recall.worse
    assert not demo.Row("g", 2, "spot recall", 0.80, 0.795, True, 0.01, False).worse
    masked = demo.Row("g", 2, "masked % (all false)", 0.10, 0.30, False, 0.01, False)
    assert masked.worse and not demo.Row("g", 2, "m", 0.30, 0.10, False, 0.01, False).worse
    rwp = demo.Row("g", 2, "Rwp", 0.0100, 0.0103, False, 0.02, True)
    assert rwp.change == pytest.approx(0.03) and rwp.worse  # relative for Rwp
    text = demo.table([recall, rwp])
    assert "| g | 2 | spot recall | 0.800 | 0.780 | -0.020 (worse) |" in text
    assert "| g | 2 | Rwp | 0.0100 | 0.0103 | +3.0 % (worse) |" in text
    assert demo.summary([recall, rwp], "g") == (
        "held-out frames of the scene: better in nothing; worse beyond tolerance: g (Rwp), "
        "g (spot recall)")


def test_the_corrected_mask_is_the_truth_in_annotation_codes(demo):
    from xrd_bluesky_mask.simulate import simulate_frame

    sim = simulate_frame(demo.scene("spots_texture", 256), seed=1)
    codes = demo.corrected_mask(sim)
    assert set(map(int, codes.ravel())) <= {0, 1, 2}
    assert ((codes == 1) == (sim.labels & ~sim.static_mask)).all()
    assert ((codes == 2) == sim.static_mask).all()
    run = demo.annotated_run(demo.scene("spots_texture", 256), 1, spot_free=1)
    assert run.indices == [1, 2] and run.heldout == []
    assert (run.codes[0] == 1).any() and not (run.codes[1] == 1).any()  # the spot-free frame


def test_the_groups_are_the_frames_xrd_mask_evaluate_renders(demo):
    from xrd_bluesky_mask.apps.evaluate import heldout_cases

    cases = demo.group_cases(2)
    assert [g for g, _ in cases] == [f"{s}/{t}" for s, t, _ in demo.GROUPS for _ in range(2)]
    for group, case in cases:
        set_name, style = group.split("/")
        assert (case.set_name, case.style) == (set_name, style)
        assert case in heldout_cases(20, (set_name,))  # same seeds as the evaluation


def test_arguments_are_checked(demo):
    args = demo.parse_args([])
    assert (args.scene, args.size, args.annotated, args.epochs) == ("spots_texture", 768, 4, 8)
    for bad in (["--size", "128"], ["--annotated", "1"], ["--epochs", "0"],
                ["--spot-free", "-1"], ["--scene", "nonsense"]):
        with pytest.raises(SystemExit):
            demo.parse_args(bad)


def test_a_tiny_run_prints_the_table_and_the_gate(demo, tmp_path, capsys):
    assert demo.main(["--size", "256", "--annotated", "3", "--heldout", "1",
                      "--group-frames", "1", "--epochs", "1", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith(("| group", "| guard"))
            and "(seed " not in line]  # the comparison table, not the guard frames
    groups = [r[0].lstrip("| ") for r in rows]
    assert groups[0] == "scene/spots_texture"  # the scene first, then every other group
    assert sorted(set(groups)) == sorted({"scene/spots_texture"} | {
        f"{s}/{t}" for s, t, _ in demo.GROUPS})
    metrics = {r[0].lstrip("| "): [] for r in rows}
    for r in rows:
        metrics[r[0].lstrip("| ")].append(r[2])
    assert metrics["scene/spots_texture"] == ["spot recall", "pixel recall", "TNR", "Rwp"]
    assert metrics["presets/perfect"] == ["masked % (all false)", "Rwp"]
    assert all(r[1] == "1" for r in rows)  # frames per group
    assert re.search(r"activation gate \(judge, on the 1 annotated frame\(s\) held out and 5 "
                     r"spot-free guard frames\): (activate|keep the base model): "
                     r"(held-out|spot-free guard frame)", out)
    assert "| guard frame | px | masked % base | retrained | Rwp base | retrained |" in out
    from xrd_bluesky_mask.models.store import read_card

    assert re.search(r"retrained on \d+ tiles \(\d+ of them rehearsal\)", out)
    card = json.loads((tmp_path / "train" / "best" / "model_card.json").read_text())
    assert card["parent"] == read_card(DEFAULT_MODEL_DIR).model_id  # fine-tuned from it
    assert card["training"]["data"]["source"] == "annotated runs"
