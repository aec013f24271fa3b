"""The demo: simulated frames through masking and integration, table + PNGs + JSON."""

from __future__ import annotations

import json

from xrd_bluesky_mask.demo import run_demo
from xrd_bluesky_mask.masking.unet import UNetMasker


def test_demo_writes_pngs_and_summary(tmp_path, tiny_model_dir, capsys):
    rows = run_demo(tmp_path, frames=2, size=320, masker=UNetMasker(tiny_model_dir),
                    progress=False)
    assert [r["scene"] for r in rows] == ["rings_spots", "spots_po"]
    for r in rows:
        assert (tmp_path / r["png"].split("/")[-1]).read_bytes()[:4] == b"\x89PNG"
        assert 0 <= r["classical"]["recall"] <= 1 and r["unet"]["seconds"] > 0
        # the classical filter finds spots the oracle-free way, and masking beats no mask
        assert r["classical"]["rwp"] < r["no_mask"]["rwp"]
    data = json.loads((tmp_path / "summary.json").read_text())
    assert len(data) == 2 and data[1]["scene"] == "spots_po"
    out = capsys.readouterr().out
    assert "classical" in out and "spots_po" in out and "Rwp" in out
