"""The adapters on their own: structure, lazy reads, metadata contract, clear errors."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from tiled.ndslice import NDBlock
from tiled.utils import ensure_uri

import tiled_adapters
from tiled_adapters import (
    FabioImageAdapter,
    FabioSequenceAdapter,
    FrameReadError,
    FrameShapeError,
    NoGeometryWarning,
)
from xrd_bluesky_mask.errors import FrameError, InputFileError


def _uri(path) -> str:
    return ensure_uri(str(path))


def test_series_structure_data_and_metadata_contract(frames_folder):
    files = sorted(frames_folder.root.glob("scan_*.tif"))
    adapter = FabioSequenceAdapter.from_uris(*[_uri(f) for f in files])
    s = adapter.structure()
    assert s.shape == (3, 256, 256) and s.dims == ("frame", "y", "x")
    assert s.chunks == ((1, 1, 1), (256,), (256,))
    assert s.data_type.to_numpy_dtype() == np.float32
    np.testing.assert_array_equal(adapter.read(), frames_folder.series)
    np.testing.assert_array_equal(adapter.read(2), frames_folder.series[2])
    np.testing.assert_array_equal(adapter.read_block(NDBlock(1, 0, 0)), frames_folder.series[1:2])
    md = adapter.metadata()
    assert md["geometry"] == {"poni": frames_folder.poni, "poni_file": "scan.poni"}
    assert md["detector_header"]["nRows"] == 256
    assert md["source"]["files"] == 3 and md["source"]["series"] == "scan"
    assert md["source"]["file_numbers"] == [1, 3] and md["source"]["missing_numbers"] == []
    json.dumps(md)  # JSON-safe, as Tiled stores it


def test_folder_uri_is_one_series_and_formats_must_not_mix(frames_folder):
    with pytest.raises(InputFileError, match="several formats.*pattern="):
        FabioSequenceAdapter.from_uris(_uri(frames_folder.root))
    adapter = FabioSequenceAdapter.from_directory(frames_folder.root, "scan_*.tif")
    assert adapter.structure().shape == (3, 256, 256)
    with pytest.warns(NoGeometryWarning):
        cbf = FabioSequenceAdapter.from_uris(_uri(frames_folder.root / "nogeometry"))
    assert cbf.structure().shape == (2, 256, 256)
    np.testing.assert_array_equal(cbf.read(), frames_folder.cbf)


def test_series_reads_only_the_files_a_read_needs(frames_folder):
    """Tiled's catalog builds the adapter with only the needed URIs filled in (the rest
    None): reading frame 1 must not touch the others."""
    files = sorted(frames_folder.root.glob("scan_*.tif"))
    full = FabioSequenceAdapter.from_uris(*[_uri(f) for f in files])
    lazy = FabioSequenceAdapter([None, _uri(files[1]), None], full.structure(), metadata={})
    np.testing.assert_array_equal(lazy.read(1), frames_folder.series[1])
    np.testing.assert_array_equal(lazy.read_block(NDBlock(1, 0, 0))[0], frames_folder.series[1])


def test_numbers_sort_as_numbers(tmp_path, frames_folder):
    import tifffile

    for k in (9, 10, 2):
        tifffile.imwrite(tmp_path / f"img_{k}.tif", np.full((4, 5), k, np.uint16))
    (tmp_path / "img.poni").write_text(frames_folder.poni)
    adapter = FabioSequenceAdapter.from_directory(tmp_path)
    assert adapter.read()[:, 0, 0].tolist() == [2, 9, 10]
    assert adapter.metadata()["source"]["missing_numbers"] == [3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("name, dtype", [("dark.edf", np.float32), ("flat.tif", np.uint16)])
def test_single_image_edf_and_tiff(frames_folder, name, dtype):
    adapter = FabioImageAdapter.from_uris(_uri(frames_folder.root / name))
    expected = frames_folder.dark if name == "dark.edf" else frames_folder.flat
    s = adapter.structure()
    assert s.shape == (256, 256) and s.dims == ("y", "x")
    assert s.data_type.to_numpy_dtype() == dtype
    np.testing.assert_array_equal(adapter.read(), expected)
    np.testing.assert_array_equal(adapter.read_block((0, 0)), expected)
    md = adapter.metadata()
    assert md["geometry"]["poni_file"] == "scan.poni"  # the folder's only PONI file
    if name == "dark.edf":
        assert md["detector_header"]["ExposureTime"] == "1.5"
        assert md["source"]["format"] == "EdfImage"


def test_multi_frame_edf_is_a_stack_read_frame_by_frame(tmp_path):
    from fabio.edfimage import EdfFrame, EdfImage

    frames = np.arange(3 * 6 * 7, dtype=np.float32).reshape(3, 6, 7)
    img = EdfImage(data=frames[0])
    for f in frames[1:]:
        img.append_frame(EdfFrame(data=f))
    img.write(str(tmp_path / "stack.edf"))
    with pytest.warns(NoGeometryWarning):
        adapter = FabioImageAdapter.from_uris(_uri(tmp_path / "stack.edf"))
    assert adapter.structure().shape == (3, 6, 7)
    assert adapter.structure().chunks == ((1, 1, 1), (6,), (7,))
    np.testing.assert_array_equal(adapter.read(), frames)
    np.testing.assert_array_equal(adapter.read((2, slice(1, 3))), frames[2, 1:3])
    np.testing.assert_array_equal(adapter.read_block((1, 0, 0)), frames[1:2])
    with pytest.raises(IndexError):
        adapter.read_block((3, 0, 0))


def test_absent_poni_gives_metadata_without_geometry_and_a_warning(frames_folder):
    files = sorted((frames_folder.root / "nogeometry").glob("*.cbf"))
    with pytest.warns(NoGeometryWarning, match="run.*without geometry.*PONI"):
        adapter = FabioSequenceAdapter.from_uris(*[_uri(f) for f in files])
    md = adapter.metadata()
    assert "geometry" not in md
    assert md["detector_header"]["X-Binary-Element-Type"] == "signed 32-bit integer"
    assert adapter.structure().data_type.to_numpy_dtype() == np.int32


def test_two_poni_files_and_none_named_after_the_series(tmp_path, frames_folder):
    for k in (1, 2):
        shutil.copy(frames_folder.root / f"scan_{k:04d}.tif", tmp_path)
    (tmp_path / "a.poni").write_text(frames_folder.poni)
    (tmp_path / "b.poni").write_text(frames_folder.poni)
    with pytest.warns(NoGeometryWarning, match="2 PONI files.*a.poni, b.poni.*scan.poni"):
        adapter = FabioSequenceAdapter.from_directory(tmp_path)
    assert "geometry" not in adapter.metadata()
    (tmp_path / "scan.poni").write_text(frames_folder.poni)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter = FabioSequenceAdapter.from_directory(tmp_path)
    assert adapter.metadata()["geometry"]["poni_file"] == "scan.poni"


def test_a_file_that_is_not_a_poni_file_is_not_geometry(tmp_path, frames_folder):
    shutil.copy(frames_folder.root / "scan_0001.tif", tmp_path / "x_1.tif")
    shutil.copy(frames_folder.root / "scan_0002.tif", tmp_path / "x_2.tif")
    (tmp_path / "x.poni").write_text("hello\n")
    with pytest.warns(NoGeometryWarning, match="does not look like a pyFAI PONI"):
        adapter = FabioSequenceAdapter.from_directory(tmp_path)
    assert "geometry" not in adapter.metadata()


def test_mixed_shapes_name_every_odd_file(frames_folder):
    files = sorted((frames_folder.root / "mixed").glob("odd_*.tif"))
    with pytest.raises(FrameError, match="mixes frame shapes") as info:
        FabioSequenceAdapter.from_uris(*[_uri(f) for f in files])
    msg = str(info.value)
    assert "2 of 256 x 256 px (odd_0001.tif, odd_0003.tif)" in msg
    assert "1 of 128 x 128 px (odd_0002.tif)" in msg


def test_unreadable_files_are_named(frames_folder):
    files = sorted((frames_folder.root / "broken").glob("*.edf"))
    with pytest.raises(InputFileError, match="1 of 2 files .*junk_0002.edf.*corrupt"):
        FabioSequenceAdapter.from_uris(*[_uri(f) for f in files])
    with pytest.raises(InputFileError, match="junk_0002.edf.*corrupt, truncated"):
        FabioImageAdapter.from_uris(_uri(files[1]))
    with pytest.raises(InputFileError, match="not found"):
        FabioImageAdapter.from_uris(_uri(frames_folder.root / "missing.tif"))


def test_files_changed_after_registration_fail_with_tiled_shape_errors(tmp_path, frames_folder):
    """Errors at read time are Tiled ShapeMismatchErrors, which the server answers with HTTP
    422 and this message (not 500, which clients retry for ~24 s)."""
    import tifffile
    from tiled.adapters.utils import ShapeMismatchError

    for name in ("scan_0001.tif", "scan_0002.tif", "scan.poni"):
        shutil.copy(frames_folder.root / name, tmp_path)
    adapter = FabioSequenceAdapter.from_directory(tmp_path)
    tifffile.imwrite(tmp_path / "scan_0002.tif", np.zeros((10, 10), np.float32))
    with pytest.raises(FrameShapeError, match="register the series again") as info:
        adapter.read(1)
    assert isinstance(info.value, ShapeMismatchError) and isinstance(info.value, FrameError)
    (tmp_path / "scan_0001.tif").write_bytes(b"gone")
    with pytest.raises(FrameReadError, match="scan_0001.tif") as info:
        adapter.read(0)
    assert isinstance(info.value, ShapeMismatchError) and isinstance(info.value, InputFileError)


def test_json_safe_headers():
    from tiled_adapters._files import MAX_ITEMS, json_safe

    value = json_safe({"a": b"x\x00y", "b": float("nan"), "c": list(range(100)), "d": None,
                       "e": np.int64(3), "f": {"g": (1.5, "t")}, "h": object})
    json.dumps(value, allow_nan=False)
    assert value["a"] == "xy" and value["b"] == "nan" and value["e"] == 3
    assert len(value["c"]) == MAX_ITEMS + 1 and value["c"][-1] == "[... 36 more]"
    assert value["f"] == {"g": [1.5, "t"]}


def test_mimetypes_cover_the_formats_and_adapters_are_importable():
    from tiled.utils import import_object

    m = tiled_adapters.MIMETYPES_BY_FILE_EXT
    assert m[".tif"] == "image/tiff" and m[".edf"] == "image/x-edf" and m[".cbf"] == "image/x-cbf"
    assert m[".ge2"] == "image/x-ge"
    for mimetype, target in tiled_adapters.ADAPTERS_BY_MIMETYPE.items():
        cls = import_object(target)
        expected = FabioSequenceAdapter if mimetype.startswith("multipart/") else FabioImageAdapter
        assert cls is expected
    from pathlib import Path

    assert tiled_adapters.detect_mimetype(Path("x/a.EDF"), None) == "image/x-edf"
    assert tiled_adapters.detect_mimetype(Path("x/a.csv"), "text/csv") == "text/csv"


def test_the_shipped_config_names_every_adapter():
    import yaml

    config = yaml.safe_load(tiled_adapters.CONFIG.read_text())
    (tree,) = config["trees"]
    assert tree["tree"] == "catalog"
    assert tree["args"]["adapters_by_mimetype"] == tiled_adapters.ADAPTERS_BY_MIMETYPE


def test_flags_for_tiled_cli(capsys):
    from tiled_adapters.__main__ import main, tiled_flags

    flags = tiled_flags()
    assert flags[:2] == ["--walker", "tiled_adapters:group_detector_series"]
    assert flags.count("--adapter") == len(tiled_adapters.ADAPTERS_BY_MIMETYPE)
    assert main(["flags"]) == 0
    assert "multipart/related;type=image/x-edf=tiled_adapters:FabioSequenceAdapter" in (
        capsys.readouterr().out)


def test_a_series_of_real_pilatus_tiffs(tmp_path):
    """fabio's header-only reader gives (0, 0) for these TIFFs; the series takes the shape from
    the TIFF tags and serves the frames as read_frame reads them."""
    from tests.real_data import require_real_data
    from xrd_bluesky_mask.io import read_frame

    real = require_real_data()
    names = ["Fe3O4C_M1_map_1_P1_E1_001.tif", "Fe3O4C_M1_map_2_P1_E1_001.tif"]
    for i, name in enumerate(names, start=1):
        shutil.copy(real / name, tmp_path / f"scan_{i:04d}.tif")
    files = sorted(tmp_path.glob("scan_*.tif"))
    with pytest.warns(tiled_adapters.NoGeometryWarning, match="scan.poni"):
        adapter = FabioSequenceAdapter.from_uris(*[_uri(f) for f in files])
    assert adapter.structure().shape == (2, 1043, 981)
    assert adapter.structure().data_type.to_numpy_dtype() == np.int32
    np.testing.assert_array_equal(adapter.read(1), read_frame(real / names[1]))
