"""predict_files / `xrd-mask predict` with a PONI for the image flipped up-down: outputs in the
input's orientation, the orientation and the geometry check recorded, the warning printed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr

from tests.real_data import require_real_data
from xrd_bluesky_mask.apps.predict_files import predict_files
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.io import read_frame, read_xy
from xrd_bluesky_mask.masking import get_masker


def test_real_pilatus_with_flipud_writes_outputs_in_the_input_orientation(tmp_path) -> None:
    real = require_real_data()
    tif = real / "CeO2_Pilatus1M.tif"
    (outcome,) = predict_files([tif], real / "CeO2_Pilatus1M.poni", get_masker("classical"),
                               tmp_path, flipud=True, progress=False)
    assert outcome.error is None and outcome.warning is None
    assert outcome.verdict is not None and outcome.verdict.status == "ok"
    raw = read_frame(tif)
    codes = tifffile.imread(tmp_path / "CeO2_Pilatus1M_mask.tif")
    # the module gaps (-1) of the file are static (2) in the mask, pixel for pixel: the mask
    # has the file's orientation, not the flipped one
    gaps = raw < 0
    assert gaps.sum() > 10_000
    np.testing.assert_array_equal(codes[gaps], 2)
    assert not np.array_equal(np.flipud(gaps), gaps)
    _, _, header = read_xy(tmp_path / "CeO2_Pilatus1M.xy")
    assert "orientation: flipud" in header
    assert any(line.startswith("geometry_check:") and '"status": "ok"' in line
               for line in header)
    with xr.open_dataarray(tmp_path / "CeO2_Pilatus1M.nc") as da:
        assert da.attrs["orientation"] == "flipud"
        assert '"best_orientation": "flipud"' in da.attrs["geometry_check"]


def test_a_batch_with_a_misfit_orientation_is_refused_unless_told(tmp_path, capsys) -> None:
    """Frames stored flipped up-down for their PONI: by default nothing is written for them
    and the exit code is 1, naming the flag; ``apply`` masks them flipped and says so in the
    table and the headers; ``keep`` writes them as asked with the warning before the table."""
    from xrd_bluesky_mask.simulate import preset, simulate_frame

    cfg = preset("rings_spots", shape=(384, 384)).updated(beam_center_frac=(0.42, 0.58))
    frame = simulate_frame(cfg, seed=2)
    poni = tmp_path / "det.poni"
    poni.write_text(frame.geometry.poni_text)
    for k in (1, 2):  # stored flipped up-down, as a PONI from Dioptas expects
        tifffile.imwrite(tmp_path / f"scan_{k}.tif", np.flipud(frame.image))
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "scan_1.tif"), str(tmp_path / "scan_2.tif"),
            "--poni", str(poni), "--masker", "classical", "--out", str(out)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "2 of 2 file(s) failed; nothing was written" in captured.err
    assert "use --flipud" in captured.err and "--if-misoriented apply" in captured.err
    assert not out.exists() or not any(out.iterdir())

    assert main([*argv, "--if-misoriented", "keep"]) == 0
    captured = capsys.readouterr()
    assert "scan_1.tif (and 1 more file(s) alike)" in captured.err
    assert "use --flipud" in captured.err
    row = next(line for line in captured.out.splitlines() if line.startswith("scan_1.tif"))
    assert row.endswith("as-given")
    kept = tifffile.imread(out / "scan_1_mask.tif")

    assert main([*argv, "--if-misoriented", "apply"]) == 0
    captured = capsys.readouterr()
    assert "warning: scan" not in captured.err
    row = next(line for line in captured.out.splitlines() if line.startswith("scan_1.tif"))
    assert row.endswith("flipud (applied; asked as-given)")
    applied = tifffile.imread(out / "scan_1_mask.tif")
    _, _, header = read_xy(out / "scan_1.xy")
    assert "orientation: flipud" in header
    assert any("applied by the geometry check" in line for line in header)

    assert main([*argv, "--flipud"]) == 0
    assert "warning: scan" not in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(out / "scan_1_mask.tif"), applied)
    # the wrong orientation masks ring pixels as spots: many more than the right one
    assert np.count_nonzero(kept == 1) > 2 * np.count_nonzero(applied == 1)
    assert main([*argv, "--no-geometry-check"]) == 0
    assert "warning: scan" not in capsys.readouterr().err


def _red_pixels_above_the_panels(png: Path) -> int:
    """Pure-red pixels in the top 6 % of a PNG (the title band, where the note goes)."""
    import matplotlib.image

    rgb = (matplotlib.image.imread(png)[..., :3] * 255).astype(int)
    top = rgb[: rgb.shape[0] * 6 // 100]
    return int(np.count_nonzero((top[..., 0] > 200) & (top[..., 1] < 80) & (top[..., 2] < 80)))


def test_the_warning_comes_before_the_table_and_on_the_overlay(tmp_path) -> None:
    """The packaged sample without --flipud, written anyway (``keep``): in one terminal stream
    the warning comes before the results table, the overlay carries it in red (one made with
    --flipud has no red title), and the overlay is 0644 like the other outputs."""
    import os
    import subprocess
    import sys

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    xrd_mask = Path(sys.executable).parent / "xrd-mask"
    base = [str(xrd_mask), "predict", str(sample / "CeO2_Pilatus1M_crop.cbf"), "--poni",
            str(sample / "CeO2_Pilatus1M_crop.poni"), "--masker", "classical", "--png"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the order a terminal shows

    def run(*extra: str, out: Path) -> str:
        done = subprocess.run([*base, "--out", str(out), *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, timeout=300, preexec_fn=lambda: os.umask(0o022))
        assert done.returncode == 0, done.stdout
        return done.stdout

    text = run("--if-misoriented", "keep", out=tmp_path / "kept")
    warning = text.index("warning: CeO2_Pilatus1M_crop.cbf")
    assert "use --flipud" in text[warning:]
    assert warning < text.index("file ") < text.index("CeO2_Pilatus1M_crop.cbf  ")
    png = tmp_path / "kept" / "CeO2_Pilatus1M_crop_overlay.png"
    for p in png.parent.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p.name
    assert _red_pixels_above_the_panels(png) > 200
    assert "warning:" not in run("--flipud", out=tmp_path / "flipped")
    assert _red_pixels_above_the_panels(
        tmp_path / "flipped" / "CeO2_Pilatus1M_crop_overlay.png") == 0


def test_each_frame_of_a_stack_gets_outputs_named_by_its_index(tmp_path, capsys) -> None:
    """A loop over ``--index`` keeps every frame's outputs instead of overwriting one set."""
    from xrd_bluesky_mask.simulate import preset, simulate_frame

    frames = [simulate_frame(preset("rings_spots", shape=(256, 256)), seed=k) for k in range(3)]
    stack = tmp_path / "stack.npy"
    np.save(stack, np.stack([f.image for f in frames]))
    poni = tmp_path / "det.poni"
    poni.write_text(frames[0].geometry.poni_text)
    out = tmp_path / "out"
    for index in (0, 2):
        assert main(["predict", str(stack), "--index", str(index), "--poni", str(poni),
                     "--masker", "classical", "--out", str(out), "--no-geometry-check"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "stack_0000.nc", "stack_0000.xy", "stack_0000_mask.tif",
        "stack_0002.nc", "stack_0002.xy", "stack_0002_mask.tif"]
    masks = [tifffile.imread(out / f"stack_{i:04d}_mask.tif") for i in (0, 2)]
    assert not np.array_equal(masks[0], masks[1])  # frame 2's mask did not replace frame 0's
    for i in (0, 2):
        _, _, header = read_xy(out / f"stack_{i:04d}.xy")
        assert f"frame_index: {i}" in header
        with xr.open_dataarray(out / f"stack_{i:04d}.nc") as da:
            assert da.attrs["frame_index"] == i
    np.save(tmp_path / "one.npy", frames[1].image)  # without an index: the plain names
    (single,) = predict_files([tmp_path / "one.npy"], poni, get_masker("classical"),
                              tmp_path / "single", progress=False, check=False)
    assert single.error is None
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == [
        "one.nc", "one.xy", "one_mask.tif"]


def test_spots_percent_is_a_share_of_the_pixels_that_are_not_static(tmp_path, capsys) -> None:
    """Half the frame NaN (static): the table's spots % is of the other half, as in every
    table, and says so."""
    from xrd_bluesky_mask.apps.evaluate import SPOTS_PCT_HEAD, SPOTS_PCT_NOTE
    from xrd_bluesky_mask.masking.preprocess import NonFiniteWarning
    from xrd_bluesky_mask.simulate import preset, simulate_frame

    frame = simulate_frame(preset("rings_spots", shape=(256, 256)), seed=4)
    image = frame.image.astype(np.float32)
    image[:, :128] = np.nan
    np.save(tmp_path / "half.npy", image)
    poni = tmp_path / "det.poni"
    poni.write_text(frame.geometry.poni_text)
    out = tmp_path / "out"
    with pytest.warns(NonFiniteWarning, match="32768 pixels are NaN"):
        assert main(["predict", str(tmp_path / "half.npy"), "--poni", str(poni), "--masker",
                     "classical", "--out", str(out), "--no-geometry-check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(line for line in lines if line.startswith("file"))
    assert head.split()[1:3] == SPOTS_PCT_HEAD.split()
    (row,) = [line for line in lines if line.startswith("half.npy")]
    spots_pct, static_pct = (float(v) for v in row.split()[1:3])
    codes = tifffile.imread(out / "half_mask.tif")
    spots, static = np.count_nonzero(codes == 1), np.count_nonzero(codes == 2)
    assert spots > 0 and static >= codes.size // 2
    assert spots_pct == pytest.approx(100 * spots / (codes.size - static), abs=5e-4)
    assert spots_pct > 1.5 * 100 * spots / codes.size  # not the share of all pixels
    assert static_pct == pytest.approx(100 * static / codes.size, abs=5e-4)
    assert any(line.startswith(SPOTS_PCT_NOTE) for line in lines)


def test_a_frame_of_nan_is_reported_as_such_without_a_geometry_warning(tmp_path,
                                                                       capsys) -> None:
    from xrd_bluesky_mask.simulate import preset, simulate_frame

    frame = simulate_frame(preset("rings_spots", shape=(128, 128)), seed=1)
    np.save(tmp_path / "nan.npy", np.full((128, 128), np.nan, np.float32))
    poni = tmp_path / "det.poni"
    poni.write_text(frame.geometry.poni_text)
    assert main(["predict", str(tmp_path / "nan.npy"), "--poni", str(poni), "--masker",
                 "classical", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "nan.npy: FrameError: the frame has no finite pixels" in err
    assert "warning:" not in err and "is zero" not in err
