"""Frame counters anywhere in a file name: detected as the one number that varies, or named;
six Dioptas-style real Pilatus frames served as one N x H x W node by a real Tiled server."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tiled_adapters.numbering import group_numbered, series_of

DIOPTAS = [Path(f"Fe3O4C_M1_map_{k}_P1_E1_001.tif") for k in (1, 2, 3, 4, 5, 6, 10)]


def test_the_counter_is_the_number_that_varies() -> None:
    (series,), singles = group_numbered(reversed(DIOPTAS))
    assert series.name == "Fe3O4C_M1_map_P1_E1_001"
    assert series.numbers == (1, 2, 3, 4, 5, 6, 10) and series.counter == 3
    assert list(series.files) == DIOPTAS and singles == []
    assert series_of(DIOPTAS) == series


def test_the_last_number_counts_classic_series_and_splits_by_the_others() -> None:
    names = [Path(n) for n in ("scan1_0002.edf", "scan1_0001.edf", "scan2_0001.edf",
                               "scan2_0002.edf", "scan2_0003.edf", "dark.edf", "cal_7.edf",
                               "scan1_0001.tif")]
    found, singles = group_numbered(names)
    assert [(s.name, [p.name for p in s.files]) for s in found] == [
        ("scan1", ["scan1_0001.edf", "scan1_0002.edf"]),
        ("scan2", ["scan2_0001.edf", "scan2_0002.edf", "scan2_0003.edf"])]
    assert [p.name for p in singles] == ["cal_7.edf", "dark.edf", "scan1_0001.tif"]


def test_the_user_names_the_counter() -> None:
    # the last number is the same in every name: with it as the counter, no series
    found, singles = group_numbered(DIOPTAS, counter=-1)
    assert found == [] and len(singles) == len(DIOPTAS)
    (series,), _ = group_numbered(DIOPTAS, counter=4)
    assert series.numbers[-1] == 10
    with pytest.raises(ValueError, match="from 1"):
        group_numbered(DIOPTAS, counter=0)


@pytest.fixture(scope="module")
def dioptas_folder(frames_folder) -> Path:
    """Six real Pilatus frames named like Dioptas' map files (copies of the two real ones),
    inside the folder the frames server may read."""
    from tests.real_data import require_real_data

    real = require_real_data()
    folder = frames_folder.root / "dioptas"
    folder.mkdir(exist_ok=True)
    for k in range(1, 7):
        src = real / f"Fe3O4C_M1_map_{2 - k % 2}_P1_E1_001.tif"
        shutil.copy(src, folder / f"Fe3O4C_M1_map_{k}_P1_E1_001.tif")
    return folder


def test_six_dioptas_frames_are_one_series_node(frames_server, dioptas_folder) -> None:
    import tiled_adapters
    from xrd_bluesky_mask.io import read_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tiled_adapters.NoGeometryWarning)
        node = tiled_adapters.register_frames(frames_server.client, dioptas_folder, "dioptas")
    assert list(node) == ["Fe3O4C_M1_map_P1_E1_001"]
    arr = node["Fe3O4C_M1_map_P1_E1_001"]
    assert arr.shape == (6, 1043, 981) and arr.dtype == np.int32
    np.testing.assert_array_equal(arr[3], read_frame(dioptas_folder /
                                                     "Fe3O4C_M1_map_4_P1_E1_001.tif"))
    source = arr.metadata["source"]
    assert source["series"] == "Fe3O4C_M1_map_P1_E1_001" and source["file_numbers"] == [1, 6]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tiled_adapters.NoGeometryWarning)
        singles = tiled_adapters.register_frames(frames_server.client, dioptas_folder,
                                                 "dioptas_singles", counter=-1)
    assert len(list(singles)) == 6 and singles["Fe3O4C_M1_map_2_P1_E1_001"].shape == (1043, 981)
