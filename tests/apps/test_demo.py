"""The demo: simulated frames through masking and integration, table + PNGs + JSON; the live
demo's command fails fast on a dead server and fails loudly when no frame was masked."""

from __future__ import annotations

import json

import pytest

import xrd_bluesky_mask.commands.demo as demo_command
import xrd_bluesky_mask.masking as masking
from xrd_bluesky_mask.apps.demo import run_demo
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.testing import free_port


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


def test_demo_with_a_dead_tiled_uri_fails_before_any_masker_is_built(tmp_path, monkeypatch,
                                                                     capsys):
    built = []
    monkeypatch.setattr(masking, "get_masker", lambda *a, **k: built.append(a))
    uri = f"http://127.0.0.1:{free_port()}/api/v1"
    rc = main(["demo", "--tiled", uri, "--frames", "1", "--size", "64", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith(f"xrd-mask: error: no Tiled server answers at {uri}")
    assert built == []  # the model was never loaded
    assert "using the Tiled server" not in captured.out  # the live demo never started


class _Kaboom(RingOutlierMasker):
    """The classical masker, failing on every frame."""

    name = "kaboom"

    def predict(self, *args, **kwargs):
        raise RuntimeError("kaboom")


def test_live_demo_exits_1_and_says_so_when_every_frame_failed(tiled_server, live_base,
                                                               monkeypatch, capsys):
    monkeypatch.setattr(demo_command, "masker_from_args", lambda args: _Kaboom())
    rc = main(["demo", "--tiled", tiled_server.uri, "--api-key", tiled_server.api_key,
               "--frames", "2", "--size", "64", "--out", str(live_base)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "xrd-mask demo: every frame failed: none of the 2 frames was masked" in err
    assert "frame 0: " in err and "frame 1: " in err and "kaboom" in err


@pytest.mark.parametrize(("frames", "status", "expected"), [
    ([None, None], "success", 0),
    ([None, "FrameError: all zero"], "success", 1),
    ([None], "success", 1),  # the second frame never got a result
    ([None, None], "abort", 1),
])
def test_verdict_counts_the_frames(frames, status, expected, capsys):
    summary = {"exit_status": status,
               "frames": [{"index": i, "error": e} for i, e in enumerate(frames)]}
    assert demo_command.verdict(summary, 2) == expected
    err = capsys.readouterr().err
    assert (err == "") == (expected == 0)
    if frames == [None, "FrameError: all zero"]:
        assert "1 of the 2 frames failed" in err and "frame 1: FrameError: all zero" in err
    if frames == [None]:
        assert "1 frame(s) got no result before the timeout" in err
