"""Real detectors' conventions: an unsigned frame's maximum value (Dectris' gap and bad-pixel
marker), a Dectris master file's ``pixel_mask``, and the shape-mismatch message's causes."""

from __future__ import annotations

from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.errors import GeometryError
from xrd_bluesky_mask.geometry import as_geometry
from xrd_bluesky_mask.io import read_frame, read_pixel_mask
from xrd_bluesky_mask.masking.preprocess import prepare_frame

from ..masking.frames import ring_frame

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
CBF, PONI = SAMPLE / "CeO2_Pilatus1M_crop.cbf", SAMPLE / "CeO2_Pilatus1M_crop.poni"
GAP_U32 = np.iinfo(np.uint32).max


@pytest.fixture(scope="module")
def eiger_like() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real sample Pilatus frame written as an Eiger writes its frames: uint32, with the
    module gaps and bad pixels (-1/-2 in the Pilatus CBF) at 2^32 - 1. Returns the uint32
    frame, the int32 original and the gap pixels (bool)."""
    raw = np.asarray(fabio.open(str(CBF)).data)
    gaps = raw < 0
    assert gaps.sum() > 5000  # whole gap rows and columns cross the crop
    eiger = np.where(gaps, GAP_U32, np.clip(raw, 0, None)).astype(np.uint32)
    return eiger, raw, gaps


def test_eiger_gap_pixels_are_static_in_predict(eiger_like, tmp_path, capsys) -> None:
    """``xrd-mask predict`` with the packaged model: the gap pixels at 2^32 - 1 are static
    (code 2), never spots, and the spot fraction is that of the same frame with -1 gaps."""
    eiger, raw, gaps = eiger_like
    np.save(tmp_path / "eiger.npy", eiger)
    np.save(tmp_path / "pilatus.npy", raw)
    out = tmp_path / "out"
    rc = main(["predict", str(tmp_path / "eiger.npy"), str(tmp_path / "pilatus.npy"),
               "--poni", str(PONI), "--flipud", "--out", str(out), "--no-geometry-check"])
    assert rc == 0, capsys.readouterr().err
    codes = fabio.open(str(out / "eiger_mask.tif")).data
    assert (codes[gaps] == 2).all()
    assert np.array_equal(codes, fabio.open(str(out / "pilatus_mask.tif")).data)
    table = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
             if line.endswith(".npy") or ".npy " in line}
    assert table["eiger.npy"][1:3] == table["pilatus.npy"][1:3]  # spots %, static %
    assert float(table["eiger.npy"][1]) < 1.0


def test_eiger_gap_pixels_are_excluded_by_predict_mask(eiger_like) -> None:
    """`predict_mask` excludes the gap pixels and gives the same mask as for -1 gaps."""
    from xrd_bluesky_mask import predict_mask

    eiger, raw, gaps = eiger_like
    mask = predict_mask(np.flipud(eiger), PONI, masker="classical")
    assert mask[np.flipud(gaps)].all()
    assert np.array_equal(mask, predict_mask(np.flipud(raw), PONI, masker="classical"))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_the_maximum_of_unsigned_frames_is_a_flag(small_geometry, rng, dtype) -> None:
    frame, _ = ring_frame(small_geometry, rng)
    frame = frame.astype(dtype)
    top = np.iinfo(dtype).max
    frame[:, 100:102] = top  # a gap column pair
    frame[7, 9] = top - 1  # a bright pixel one count below the marker is a measurement
    f32, static = prepare_frame(frame, small_geometry)
    assert static[:, 100:102].all() and static.sum() == 2 * 256
    assert not static[7, 9] and f32[7, 9] > 0 and (f32[static] == 0).all()


def _dectris_files(folder: Path, frames: np.ndarray, pixel_mask: np.ndarray) -> Path:
    """A Dectris-like pair: ``x_master.h5`` (``pixel_mask``, a flat field, frames as an
    external link) and ``x_data_000001.h5`` holding the frames."""
    with h5py.File(folder / "x_data_000001.h5", "w") as f:
        f.create_dataset("entry/data/data", data=frames)
    master = folder / "x_master.h5"
    with h5py.File(master, "w") as f:
        spec = f.create_group("entry/instrument/detector/detectorSpecific")
        spec.create_dataset("flatfield", data=np.ones(frames.shape[-2:], np.float32))
        spec.create_dataset("pixel_mask", data=pixel_mask.astype(np.uint32))
        f["entry/data/data_000001"] = h5py.ExternalLink("x_data_000001.h5", "/entry/data/data")
    return master


def test_a_dectris_master_files_pixel_mask_becomes_static(small_geometry, rng, tmp_path,
                                                           capsys) -> None:
    spots = [(60, 70, 1.5, 6000.0)]
    frame, _ = ring_frame(small_geometry, rng, spots=spots)
    frames = np.stack([frame, frame]).astype(np.uint32)
    frames[:, 30, 40] = 50_000  # a hot pixel the detector knows of: spot-like, but flagged
    frames[:, 128, :] = GAP_U32  # a gap row
    pixel_mask = np.zeros((256, 256), np.uint32)
    pixel_mask[30, 40] = 8  # Dectris' bit for an over-responding pixel
    pixel_mask[128, :] = 1  # gap
    master = _dectris_files(tmp_path, frames, pixel_mask)

    assert np.array_equal(read_frame(master, index=1), frames[1])  # the frames, not the mask
    assert np.array_equal(read_pixel_mask(master), pixel_mask != 0)
    assert read_pixel_mask(tmp_path / "x_data_000001.h5") is None
    assert read_pixel_mask(CBF) is None

    poni = tmp_path / "det.poni"
    poni.write_text(small_geometry.poni_text)
    for name in ("x_master.h5", "x_data_000001.h5"):
        rc = main(["predict", str(tmp_path / name), "--index", "0", "--poni", str(poni),
                   "--out", str(tmp_path / "out"), "--masker", "classical",
                   "--no-geometry-check"])
        assert rc == 0, capsys.readouterr().err
    with_mask = fabio.open(str(tmp_path / "out" / "x_master_0000_mask.tif")).data
    without = fabio.open(str(tmp_path / "out" / "x_data_000001_0000_mask.tif")).data
    assert with_mask[30, 40] == 2 and without[30, 40] == 1  # the file's mask decides
    assert (with_mask[128] == 2).all() and (without[128] == 2).all()
    assert with_mask[60, 70] == 1 == without[60, 70]


def test_a_pixel_mask_of_another_shape_is_not_used(small_geometry, rng, tmp_path,
                                                   caplog) -> None:
    frame, _ = ring_frame(small_geometry, rng)
    master = _dectris_files(tmp_path, frame[None].astype(np.uint32),
                            np.ones((10, 10), np.uint32))
    poni = tmp_path / "det.poni"
    poni.write_text(small_geometry.poni_text)
    with caplog.at_level("WARNING"):
        rc = main(["predict", str(master), "--poni", str(poni), "--out", str(tmp_path / "o"),
                   "--masker", "classical", "--no-geometry-check"])
    assert rc == 0
    assert "does not have the frame's shape" in caplog.text


EIGER500K_PONI = """poni_version: 2
Detector: Eiger500k
Detector_config: {"orientation": 3}
Distance: 0.1
Poni1: 0.04
Poni2: 0.08
Rot1: 0
Rot2: 0
Rot3: 0
Wavelength: 1e-10
"""


@pytest.mark.parametrize(("shape", "likely"), [
    ((512, 1028), "2 row(s) and 2 column(s) smaller"),
    ((1030, 514), "transposed or rotated by 90°"),
    ((257, 515), "binned 2x2"),
])
def test_the_shape_mismatch_names_the_usual_causes(shape, likely) -> None:
    """A PONI for pyFAI's Eiger500k (514 x 1030 with its gaps) on other frames."""
    with pytest.raises(GeometryError) as info:
        as_geometry(EIGER500K_PONI, shape)
    message = str(info.value)
    assert f"frame shape {shape} does not match the detector shape (514, 1030)" in message
    assert likely in message
    for cause in ("binning", "crop or ROI", "transposed or rotated", "wrong detector"):
        assert cause in message
