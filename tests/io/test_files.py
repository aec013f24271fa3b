"""Tests of xrd_bluesky_mask.io: frame readers and atomic writers."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

from tests.real_data import REAL, require_real_data
from xrd_bluesky_mask import io as files
from xrd_bluesky_mask.errors import FrameError, InputFileError
from xrd_bluesky_mask.io import (
    atomic_write,
    read_frame,
    read_xy,
    write_mask_tiff,
    write_netcdf,
    write_xy,
)


@pytest.fixture
def frame(rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(100, (40, 56)).astype(np.int32)


@pytest.fixture
def stack(rng: np.random.Generator) -> np.ndarray:
    return rng.random((4, 24, 32), dtype=np.float32)


def only_files(folder: Path) -> set[str]:
    """Every entry of a folder, hidden temporaries included."""
    return set(os.listdir(folder))


def make_pattern(npt: int = 50, unit: str = "2th_deg") -> xr.DataArray:
    """A DataArray laid out like `integration.Integrator.integrate` output."""
    tth = np.linspace(1.0, 20.0, npt)
    q = 4 * np.pi * np.sin(np.radians(tth) / 2) / 0.5
    y = 100 + 50 * np.exp(-0.5 * ((tth - 8) / 0.2) ** 2)
    y[3] = np.nan  # an empty bin
    return xr.DataArray(
        y, dims=("radial",), name="intensity",
        coords={
            "two_theta": ("radial", tth, {"units": "deg", "pyfai_unit": "2th_deg"}),
            "q": ("radial", q, {"units": "1/Å", "pyfai_unit": "q_A^-1"}),
            "sigma": ("radial", np.sqrt(y) / 10, {"units": "counts"}),
        },
        attrs={
            "radial_unit": unit, "method": ("bbox", "csr", "cython"), "npt": npt,
            "polarization_factor": None, "correct_solid_angle": True,
            "radial_range": (0.5, 20.5), "masked_pixels": 12, "masked_fraction": 0.001,
            "poni": "Distance: 0.1\nPoni1: 0.01\nPoni2: 0.01\nWavelength: 5e-11\n",
            "package": "xrd_bluesky_mask",
        },
    )


# ------------------------------------------------------------------------------------------
# read_frame
# ------------------------------------------------------------------------------------------


def test_tiff_round_trip(tmp_path: Path, frame: np.ndarray) -> None:
    import fabio

    p = tmp_path / "f.tif"
    fabio.tifimage.TifImage(data=frame).write(str(p))
    got = read_frame(p)
    assert got.dtype == frame.dtype and np.array_equal(got, frame)
    tifffile.imwrite(tmp_path / "g.tiff", frame.astype(np.float32))
    assert np.array_equal(read_frame(tmp_path / "g.tiff"), frame.astype(np.float32))


def test_tiff_stack_needs_index(tmp_path: Path, stack: np.ndarray) -> None:
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack, photometric="minisblack")  # one page per frame (fabio reads it)
    with pytest.raises(FrameError, match="index"):
        read_frame(p)
    assert np.array_equal(read_frame(p, index=2), stack[2])
    assert np.array_equal(read_frame(p, index=-1), stack[-1])
    # a layout fabio cannot read (planar samples): the tifffile fallback reads it
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, stack[:3], photometric="rgb", planarconfig="separate")
    with pytest.raises(FrameError, match="3 frames"):
        read_frame(planar)
    assert np.array_equal(read_frame(planar, index=1), stack[1])


def test_edf_round_trip(tmp_path: Path, frame: np.ndarray, stack: np.ndarray) -> None:
    from fabio.edfimage import EdfImage

    p = tmp_path / "f.edf"
    EdfImage(data=frame, header={"ExposureTime": "0.1"}).write(str(p))
    assert np.array_equal(read_frame(p), frame)
    multi = EdfImage(data=stack[0])
    for s in stack[1:]:
        multi.append_frame(data=s)
    multi.write(str(tmp_path / "multi.edf"))
    with pytest.raises(FrameError, match="index"):
        read_frame(tmp_path / "multi.edf")
    assert np.array_equal(read_frame(tmp_path / "multi.edf", index=3), stack[3])
    with pytest.raises(FrameError, match="out of range"):
        read_frame(tmp_path / "multi.edf", index=4)


def test_npy_round_trip(tmp_path: Path, frame: np.ndarray, stack: np.ndarray) -> None:
    np.save(tmp_path / "f.npy", frame)
    assert np.array_equal(read_frame(tmp_path / "f.npy"), frame)
    assert np.array_equal(read_frame(tmp_path / "f.npy", index=0), frame)
    with pytest.raises(FrameError, match="out of range"):
        read_frame(tmp_path / "f.npy", index=1)
    np.save(tmp_path / "s.npy", stack)
    with pytest.raises(FrameError, match="pass index"):
        read_frame(tmp_path / "s.npy")
    assert np.array_equal(read_frame(tmp_path / "s.npy", index=1), stack[1])
    np.save(tmp_path / "one.npy", stack[:1])  # a stack of one frame needs no index
    assert np.array_equal(read_frame(tmp_path / "one.npy"), stack[0])
    np.save(tmp_path / "line.npy", frame[0])
    with pytest.raises(FrameError):
        read_frame(tmp_path / "line.npy")


def test_hdf5_stack(tmp_path: Path, stack: np.ndarray, frame: np.ndarray) -> None:
    p = tmp_path / "scan.h5"
    with h5py.File(p, "w") as f:
        f["entry/instrument/energy"] = 67.4  # scalars are skipped by auto-detection
        f["entry/data/data"] = stack
        f["entry/other/image"] = frame
    with pytest.raises(FrameError, match="index"):
        read_frame(p)
    assert np.array_equal(read_frame(p, index=2), stack[2])  # first ≥2D dataset
    assert np.array_equal(read_frame(p, dataset="/entry/other/image"), frame)
    assert np.array_equal(read_frame(p, dataset="entry/data/data", index=0), stack[0])
    with pytest.raises(InputFileError, match="no dataset"):
        read_frame(p, dataset="/entry/missing")
    with pytest.raises(FrameError, match="not a numeric image"):
        read_frame(p, dataset="/entry/instrument/energy")
    with pytest.raises(FrameError, match="out of range"):
        read_frame(p, index=4)


def test_hdf5_4d_and_nexus_default(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 1000, (2, 3, 8, 10), dtype=np.uint32)
    p = tmp_path / "map.nxs"
    with h5py.File(p, "w") as f:
        f["aaa/first"] = np.zeros((5, 5))  # first in walk order, but not the NeXus default
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["default"] = "plot"
        plot = entry.create_group("plot")
        plot.attrs["signal"] = "frames"
        plot["frames"] = data
    assert np.array_equal(read_frame(p, index=4), data[1, 1])  # C-order over (2, 3)
    with pytest.raises(FrameError, match="6 frames"):
        read_frame(p)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(InputFileError, match="nope.tif") as err:
        read_frame(missing)
    assert isinstance(err.value, OSError)
    with pytest.raises(InputFileError, match="folder"):
        read_frame(tmp_path)
    for suffix, reader in ((".tif", "fabio"), (".edf", "fabio"), (".h5", "h5py"),
                           (".npy", "numpy"), (".cbf", "fabio")):
        bad = tmp_path / f"bad{suffix}"
        bad.write_bytes(b"this is not an image \x00\x01\x02" * 8)
        with pytest.raises(InputFileError) as err:
            read_frame(bad)
        msg = str(err.value)
        assert reader in msg and "Supported formats" in msg and str(bad) in msg
    with pytest.raises(FrameError, match="HDF5"):
        read_frame(tmp_path / "bad.tif", dataset="/x")


def test_real_pilatus_tiff() -> None:
    require_real_data()
    img = read_frame(REAL / "CeO2_Pilatus1M.tif")
    assert img.shape == (1043, 981) and img.dtype == np.int32 and (img == -1).any()


# ------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------


def test_mask_tiff(tmp_path: Path, rng: np.random.Generator) -> None:
    import fabio

    mask = rng.random((30, 44)) < 0.2
    p = write_mask_tiff(tmp_path / "out" / "mask.tif", mask)  # creates the folder
    assert p == tmp_path / "out" / "mask.tif"
    for got in (fabio.open(str(p)).data, tifffile.imread(p), read_frame(p)):
        assert got.dtype == np.uint8 and got.shape == mask.shape
        assert np.array_equal(got, mask.astype(np.uint8))
    write_mask_tiff(p, np.where(mask, 7, 0))  # any non-zero value becomes 1, file replaced
    assert set(np.unique(tifffile.imread(p))) <= {0, 1}
    assert only_files(p.parent) == {"mask.tif"}
    assert (p.stat().st_mode & 0o777) != 0o600  # not the private mode of a temp file
    with pytest.raises(FrameError):
        write_mask_tiff(tmp_path / "m3.tif", np.zeros((2, 3, 4)))


def test_xy_round_trip(tmp_path: Path) -> None:
    pat = make_pattern()
    p = write_xy(tmp_path / "p.xy", pat, header={"frame": "scan_0001.tif", "note": "a\nb"})
    x, y, header = read_xy(p)
    np.testing.assert_allclose(x, pat.two_theta.values, rtol=1e-9)
    np.testing.assert_allclose(y, pat.values, rtol=1e-9, equal_nan=True)
    assert "radial_unit: 2th_deg" in header and "frame: scan_0001.tif" in header
    assert "method: bbox, csr, cython" in header and "package: xrd_bluesky_mask" in header
    assert any("Distance: 0.1" in h for h in header)  # multi-line PONI kept
    assert header[-1].split()[:3] == ["2th_deg", "I", "sigma"]
    sigma = np.loadtxt(p, comments="#")[:, 2]
    np.testing.assert_allclose(sigma, pat.sigma.values, rtol=1e-9)
    assert only_files(tmp_path) == {"p.xy"}


def test_xy_uses_the_binning_unit(tmp_path: Path) -> None:
    pat = make_pattern(unit="q_A^-1")
    x, _, header = read_xy(write_xy(tmp_path / "q.xy", pat))
    np.testing.assert_allclose(x, pat.q.values, rtol=1e-9)
    assert header[-1].startswith("q_A^-1")


def test_read_xy_foreign_files(tmp_path: Path) -> None:
    p = tmp_path / "dioptas.xy"
    p.write_text("# Dioptas pattern\n# 2th_deg I\n1.0 10.0\n1.5 12.0 0.3\n\n2.0, 11.0\n")
    x, y, header = read_xy(p)
    assert list(x) == [1.0, 1.5, 2.0] and list(y) == [10.0, 12.0, 11.0]
    assert header == ["Dioptas pattern", "2th_deg I"]
    (tmp_path / "bad.xy").write_text("# nothing\n")
    with pytest.raises(InputFileError, match="no numeric data"):
        read_xy(tmp_path / "bad.xy")
    (tmp_path / "bad2.xy").write_text("1 2\n3 4\nfoo bar\n")
    with pytest.raises(InputFileError, match="line 3"):
        read_xy(tmp_path / "bad2.xy")
    with pytest.raises(InputFileError, match="not found"):
        read_xy(tmp_path / "missing.xy")


def test_read_pyfai_xy() -> None:
    require_real_data()
    x, y, header = read_xy(REAL / "Fe3O4C_M1_map_1_P1_E1_001.xy")
    assert len(x) == len(y) == 1508
    assert any(h.startswith("Polarization factor: 0.99") for h in header)


def test_netcdf_round_trip(tmp_path: Path) -> None:
    pat = make_pattern()
    before = dict(pat.attrs)
    p = write_netcdf(tmp_path / "p.nc", pat)
    assert pat.attrs == before  # the input is not modified
    assert pat.two_theta.attrs == {"units": "deg", "pyfai_unit": "2th_deg"}
    with xr.open_dataarray(p) as got:
        got = got.load()
    assert got.name == "intensity" and got.dims == ("radial",)
    np.testing.assert_allclose(got.values, pat.values, equal_nan=True)
    for c in ("two_theta", "q", "sigma"):
        np.testing.assert_allclose(got[c].values, pat[c].values)
    assert got.two_theta.attrs["units"] == "deg" and got.q.attrs["units"] == "1/Å"
    assert got.attrs["method"] == "bbox, csr, cython"
    assert got.attrs["polarization_factor"] == "None"
    assert got.attrs["correct_solid_angle"] == 1
    assert list(got.attrs["radial_range"]) == [0.5, 20.5]
    assert got.attrs["masked_pixels"] == 12 and got.attrs["poni"] == pat.attrs["poni"]
    assert only_files(tmp_path) == {"p.nc"}


def test_netcdf_of_real_integration(tmp_path: Path, small_geometry) -> None:
    from xrd_bluesky_mask.azimuthal import IntegrationSettings, integrate

    frame = np.full(small_geometry.shape, 10.0, dtype=np.float32)
    pat = integrate(frame, small_geometry, settings=IntegrationSettings(npt=32))
    with xr.open_dataarray(write_netcdf(tmp_path / "r.nc", pat)) as got:
        np.testing.assert_allclose(got.values, pat.values, equal_nan=True)
        assert got.attrs["package"] == "xrd_bluesky_mask"


def test_netcdf_safe_attrs() -> None:
    out = files.netcdf_safe_attrs(
        {"a": None, "b": True, "c": (1, 2), "d": ("x", "y"), "e": {"k": 1}, "f": np.float32(2),
         "g": Path("/tmp/x"), "h": [1.5, None]}
    )
    assert out["a"] == "None" and out["b"] == 1 and not isinstance(out["b"], bool)
    assert out["c"].tolist() == [1, 2] and out["d"] == "x, y" and out["e"] == '{"k": 1}'
    assert out["f"] == 2.0 and out["g"] == "/tmp/x" and out["h"] == "1.5, None"


def test_atomic_write_failure_leaves_nothing(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        tmp.write_text("half a file")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "new.xy", broken)
    assert only_files(tmp_path) == set()
    keep = tmp_path / "old.xy"
    keep.write_text("complete old content")
    with pytest.raises(RuntimeError):
        atomic_write(keep, broken)
    assert keep.read_text() == "complete old content"
    assert only_files(tmp_path) == {"old.xy"}


def test_writer_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write_netcdf(tmp_path / "p.nc", make_pattern())
    size = p.stat().st_size

    def fail(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("interrupted")

    monkeypatch.setattr(xr.DataArray, "to_netcdf", fail)
    with pytest.raises(OSError, match="interrupted"):
        write_netcdf(p, make_pattern())
    assert p.stat().st_size == size and only_files(tmp_path) == {"p.nc"}


def test_poni_from_xy_header(tmp_path: Path) -> None:
    from xrd_bluesky_mask.io import poni_from_xy_header

    poni, pol = poni_from_xy_header(REAL / "Fe3O4C_M1_map_1_P1_E1_001.xy")
    assert "Distance: 0.284634930882" in poni and "PixelSize1: 1.720e-04" in poni
    assert pol == pytest.approx(0.99)
    plain = tmp_path / "plain.xy"
    plain.write_text("# 2th_deg I\n1.0 2.0\n2.0 3.0\n")
    with pytest.raises(InputFileError, match="calibration header"):
        poni_from_xy_header(plain)


def test_a_truncated_edf_is_an_error_not_a_zero_padded_frame(tmp_path):
    import fabio

    from xrd_bluesky_mask.io.frames import read_frame

    path = tmp_path / "frame.edf"
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 1
    fabio.edfimage.EdfImage(data=data).write(str(path))
    np.testing.assert_array_equal(read_frame(path), data)
    with open(path, "r+b") as fh:  # a copy that stopped 1000 bytes short
        fh.truncate(path.stat().st_size - 1000)
    with pytest.raises(FrameError, match="truncated"):
        read_frame(path)
