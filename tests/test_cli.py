"""`xrd-mask predict` on real files, and its errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import fabio
import numpy as np
import pytest

from tests.extras import require_extra
from tests.real_data import require_real_data
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.io import read_xy

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


def test_predict_exports_masks_pyfai_and_dioptas_load(tmp_path, capsys):
    """A real Pilatus frame whose PONI applies to it flipped up-down (--flipud): the exported
    masks are in the file's orientation (pyFAI) and in Dioptas' own (.mask)."""
    real = require_real_data()
    require_extra("dioptas", "dioptas")
    from dioptas.model.MaskModel import MaskModel

    out = tmp_path / "out"
    rc = main(["predict", str(real / "CeO2_Pilatus1M.tif"), "--poni",
               str(real / "CeO2_Pilatus1M.poni"), "--flipud", "--out", str(out), "--masker",
               "classical", "--npt", "500", "--export", "edf", "--export", "npy",
               "--export", "dioptas"])
    assert rc == 0, capsys.readouterr().err
    raw = fabio.open(str(real / "CeO2_Pilatus1M.tif")).data
    codes = fabio.open(str(out / "CeO2_Pilatus1M_mask.tif")).data  # the input's orientation
    exclude = codes != 0
    assert (codes == 1).sum() > 100 and exclude[raw < 0].all()
    edf = fabio.open(str(out / "CeO2_Pilatus1M_mask.edf")).data
    npy = np.load(out / "CeO2_Pilatus1M_mask.npy")
    for got in (edf, npy):
        assert got.shape == raw.shape and np.array_equal(got != 0, exclude)
    dioptas = MaskModel.read_mask_file(str(out / "CeO2_Pilatus1M.mask"))
    assert np.array_equal(dioptas != 0, np.flipud(exclude))  # as Dioptas shows the frame


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


def _cli(*argv: str) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh interpreter (as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "xrd_bluesky_mask.cli", *argv],
                          capture_output=True, text=True, timeout=100)


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--masker", "nosuch", "no such masker"),
    ("--npt", "3", "greater than or equal to 16"),
])
def test_bad_options_are_a_message_and_exit_2(tiff_and_poni, tmp_path, option, value, words):
    tif, poni, _ = tiff_and_poni
    res = _cli("predict", str(tif), "--poni", str(poni), "--out", str(tmp_path / "o"),
               option, value)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith(f"xrd-mask: error: {option} {value}:")
    assert words in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["--polarization", "2"], ["--polarization 2.0: polarization_factor must be in [-1, 1]"]),
    (["--npt", "3", "--polarization", "-5"],
     ["invalid integration options:", "  --npt 3: ", "  --polarization -5.0: "]),
    (["--threshold", "1.5"], ["--threshold 1.5: must be in (0, 1)"]),
    (["--masker", "classical", "--n-sigma", "0"], ["--n-sigma 0: must be greater than 0"]),
    (["--device", "nosuch"], ["--device nosuch: "]),
])
def test_each_bad_option_is_named(tiff_and_poni, tmp_path, capsys, argv, expected):
    tif, poni, _ = tiff_and_poni
    assert main(["predict", str(tif), "--poni", str(poni), "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert len(err.splitlines()) == len(expected)  # one line per bad field, under a heading


def test_options_are_checked_before_the_model_loads(tiff_and_poni, tmp_path, monkeypatch,
                                                    capsys):
    import xrd_bluesky_mask.masking as masking

    loaded = []
    monkeypatch.setattr(masking, "get_masker", lambda *a, **k: loaded.append(a))
    tif, poni, _ = tiff_and_poni
    for bad in (["--npt", "3"], ["--threshold", "0"], ["--masker", "nosuch"]):
        assert main(["predict", str(tif), "--poni", str(poni), *bad]) == 2
    assert loaded == []
    assert capsys.readouterr().err.count("xrd-mask: error:") == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["calibrate", "model", "--target-tnr", "2"], "--target-tnr 2: must be in (0.5, 1)"),
    (["bench", "--frames", "0"], "--frames 0: must be at least 1"),
    (["bench", "--batch", "0"], "--batch 0: must be at least 1"),
])
def test_range_checks_of_other_commands(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == f"xrd-mask: error: {message}\n"


def test_ctrl_c_exits_130_quietly_and_bugs_keep_their_traceback(monkeypatch, capsys):
    import xrd_bluesky_mask.commands.bench as bench

    def interrupted(args, argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run", interrupted)
    assert main(["bench"]) == 130
    assert capsys.readouterr().err == ""

    def buggy(args, argv):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(bench, "run", buggy)
    with pytest.raises(ValueError, match="a bug"):
        main(["bench"])


def test_every_error_is_one_family_with_its_builtin():
    import inspect

    from xrd_bluesky_mask import errors
    from xrd_bluesky_mask.errors import UnknownSource

    family = [c for _, c in inspect.getmembers(errors, inspect.isclass)
              if c.__module__ == errors.__name__]
    assert {"Cancelled", "ConfigError", "MissingExtra", "UnknownSource"} <= {
        c.__name__ for c in family}
    for cls in family:
        assert issubclass(cls, errors.XRDMaskError)
        if cls is not errors.XRDMaskError:  # each also is the builtin a caller may catch
            assert [b for b in cls.__mro__ if b.__module__ == "builtins"
                    and b not in (object, BaseException, Exception)], cls
    assert issubclass(errors.ConfigError, ValueError)
    assert UnknownSource is errors.UnknownSource


def test_verbose_logs_this_package_without_the_libraries_chatter(tiff_and_poni, tmp_path):
    tif, poni, _ = tiff_and_poni
    res = _cli("-v", "predict", str(tif), "--poni", str(poni), "--masker", "classical",
               "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "pyOpenCl" not in res.stderr
    infos = [line for line in res.stderr.splitlines() if line.startswith("INFO ")]
    assert infos and all(line.startswith("INFO xrd_bluesky_mask") for line in infos), infos
