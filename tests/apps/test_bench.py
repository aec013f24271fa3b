"""`xrd-mask bench` times every path on the same frames and prints a table and JSON."""

import json

from xrd_bluesky_mask.cli import main


def test_bench_command_prints_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--size", "256", "--frames", "2", "--batch", "2", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| U-Net fast path" in text and "| classical per-ring filter" in text
    assert "machine:" in text and "fast vs reference masks" in text
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"fast", "reference", "classical"}
    for r in data["results"].values():
        assert r["frames_per_s"] > 0
        assert r["ms"]["total"] >= r["ms"]["network"]
    assert data["mask_agreement"] >= 0.9999
    assert data["ratios"]["fast U-Net / classical (ms per frame)"] > 0
