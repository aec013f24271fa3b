"""``xrd-mask sample``: a simulated frame, its PONI and its true mask, and the predict line it
prints, run as printed."""

from __future__ import annotations

import shlex

import fabio
import numpy as np
import pytest

from xrd_bluesky_mask.apps.sample import write_sample
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.errors import ConfigError


def test_sample_writes_a_frame_that_the_printed_command_masks(tmp_path, capsys,
                                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "try", "--shape", "512x512", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    (line,) = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("xrd-mask predict")]
    frame = fabio.open("try/sample_rings_spots.tif").data
    truth = fabio.open("try/sample_rings_spots_truth.tif").data
    assert frame.shape == truth.shape == (512, 512) and frame.dtype == np.float32
    assert set(np.unique(truth)) <= {0, 1, 2} and (truth == 1).mean() > 0.01
    assert "% spot pixels" in out

    argv = shlex.split(line)
    assert argv[0] == "xrd-mask"
    assert main(argv[1:]) == 0  # as printed: the PONI fits the frame with no flip
    capsys.readouterr()
    codes = fabio.open("try/masks/sample_rings_spots_mask.tif").data
    found, true = codes == 1, truth == 1
    assert (found & true).sum() / true.sum() > 0.6  # the packaged model finds the spots
    assert (found & true).sum() / found.sum() > 0.8  # and masks little else
    assert (tmp_path / "try" / "masks" / "sample_rings_spots_overlay.png").is_file()


def test_the_same_seed_writes_the_same_frame(tmp_path) -> None:
    a = write_sample(tmp_path / "a", scene="perfect", shape=(256, 320), seed=7)
    b = write_sample(tmp_path / "b", scene="perfect", shape=(256, 320), seed=7)
    c = write_sample(tmp_path / "c", scene="perfect", shape=(256, 320), seed=8)
    assert a.frame.read_bytes() == b.frame.read_bytes() != c.frame.read_bytes()
    assert a.poni.read_text() == b.poni.read_text()
    assert "max_shape\": [256, 320]" in a.poni.read_text()
    assert a.spot_fraction == 0.0  # the perfect scene has no spots
    assert fabio.open(str(a.frame)).data.shape == (256, 320)


def test_bad_requests_are_one_line(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match="at least 256 x 256"):
        write_sample(tmp_path, shape=(64, 64))
    with pytest.raises(ConfigError, match="unknown scene 'powder'"):
        write_sample(tmp_path, scene="powder")
    with pytest.raises(SystemExit):
        main(["sample", str(tmp_path), "--shape", "big"])
    assert "is not a frame shape" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
