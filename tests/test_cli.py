"""`xrd-mask predict` on real files, and its errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import fabio
import numpy as np
import pytest

from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.files import read_xy

from .masking.frames import ring_frame


@pytest.fixture
def tiff_and_poni(tmp_path, small_geometry, rng):
    spots = [(60, 70, 1.5, 6000.0), (200, 180, 2.5, 3000.0)]
    frame, _ = ring_frame(small_geometry, rng, spots=spots)
    frame[:, 120:123] = -1  # a gap
    tif = tmp_path / "scan_0001.tif"
    fabio.tifimage.TifImage(data=frame.astype(np.int32)).write(str(tif))
    poni = tmp_path / "det.poni"
    poni.write_text(small_geometry.poni_text)
    return tif, poni, spots


def test_predict_writes_mask_pattern_and_png(tiff_and_poni, tmp_path, capsys):
    tif, poni, spots = tiff_and_poni
    out = tmp_path / "out"
    rc = main(["predict", str(tif), "--poni", str(poni), "--out", str(out),
               "--masker", "classical", "--png", "--npt", "500"])
    assert rc == 0
    mask = fabio.open(str(out / "scan_0001_mask.tif")).data
    assert mask.shape == (256, 256) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2}
    assert (mask[:, 120:123] == 2).all()
    for r, c, _, _ in spots:
        assert mask[r, c] == 1
    x, y, header = read_xy(out / "scan_0001.xy")
    assert len(x) == 500 and np.isfinite(y).sum() > 400
    assert any("classical" in h for h in header)
    assert (out / "scan_0001.nc").stat().st_size > 0
    assert (out / "scan_0001_overlay.png").read_bytes()[:4] == b"\x89PNG"
    assert "scan_0001.tif" in capsys.readouterr().out


def test_predict_with_a_unet_model_folder(tiff_and_poni, tmp_path, tiny_model_dir):
    tif, poni, _ = tiff_and_poni
    out = tmp_path / "out"
    rc = main(["predict", str(tif), "--poni", str(poni), "--out", str(out),
               "--model", str(tiny_model_dir), "--npt", "300"])
    assert rc == 0
    _, _, header = read_xy(out / "scan_0001.xy")
    assert any("tiny-untrained" in h for h in header)


def test_bad_inputs_write_nothing_and_are_reported_together(tiff_and_poni, tmp_path, capsys):
    tif, poni, _ = tiff_and_poni
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((100, 100), np.float32))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    rc = main(["predict", str(wrong), str(broken), str(tmp_path / "missing.edf"), str(tif),
               "--poni", str(poni), "--out", str(out), "--masker", "classical"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "3 of 4 file(s) failed" in err
    assert "does not match the detector shape" in err and "missing.edf" in err
    written = sorted(p.name for p in out.iterdir())
    assert all(name.startswith("scan_0001") for name in written) and len(written) == 3


def test_missing_or_unparsable_poni(tiff_and_poni, tmp_path, capsys):
    tif, _, _ = tiff_and_poni
    assert main(["predict", str(tif), "--poni", str(tmp_path / "nope.poni")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.poni"
    bad.write_text("this is not a poni file\n")
    rc = main(["predict", str(tif), "--poni", str(bad), "--out", str(tmp_path / "o"),
               "--masker", "classical"])
    assert rc == 1
    assert "does not look like a pyFAI PONI" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which("xrd-mask") or str(
        __import__("pathlib").Path(sys.executable).with_name("xrd-mask"))
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for cmd in ("demo", "predict", "train"):
        assert cmd in res.stdout
