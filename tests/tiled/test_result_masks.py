"""A Tiled result's masks written as pyFAI/Dioptas files, by function and by ``xrd-mask
export-mask``, and read back with fabio, numpy and Dioptas."""

from __future__ import annotations

import uuid

import fabio
import numpy as np
import pytest

from tests.extras import require_extra
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.errors import UnknownSource
from xrd_bluesky_mask.protocols import encode_mask
from xrd_bluesky_mask.provenance import provenance
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.tiled.result_masks import export_result_masks

from .test_results import _pattern

H, W = 24, 20


def _codes(i: int) -> np.ndarray:
    spots = np.zeros((H, W), bool)
    spots[i + 1, 2:6] = True  # not symmetric up-down
    static = np.zeros((H, W), bool)
    static[:, 9] = True
    return encode_mask(spots, static)


@pytest.fixture
def result(tiled_server):
    """A result of frames 0 and 2 of a 4-frame run (frames 1 and 3 not done)."""
    uid = str(uuid.uuid4())
    md = provenance(uid, stream="primary", field="det", poni="Distance: 0.1\n",
                    masker_settings={"masker": "classical", "n_sigma": 3.0},
                    integration={"npt": 32}, frames_expected=4, frame_shape=(H, W))
    sink = TiledResultSink(tiled_server.client())
    sink.open_run(uid, md)
    for i in (0, 2):
        sink.write(uid, i, _codes(i), _pattern(i))
    sink.close_run(uid, "complete_with_errors", {1: "boom", 3: "boom"})
    return uid


def test_export_every_done_frame_in_each_format(tiled_server, result, tmp_path):
    require_extra("dioptas", "dioptas")
    from dioptas.model.MaskModel import MaskModel

    written = export_result_masks(tiled_server.client(), result, tmp_path,
                                  formats=["edf", "npy", "dioptas"])
    assert [p.name for p in written] == [
        f"{result}_{i:05d}{end}" for i in (0, 2)
        for end in ("_mask.edf", "_mask.npy", ".mask")]
    for i in (0, 2):
        exclude = _codes(i) != 0
        edf, npy, dioptas = written[3 * (i // 2): 3 * (i // 2) + 3]
        assert np.array_equal(fabio.open(str(edf)).data, exclude)
        assert np.array_equal(np.load(npy), exclude)
        assert np.array_equal(MaskModel.read_mask_file(str(dioptas)) != 0, np.flipud(exclude))


def test_frames_not_done_are_refused(tiled_server, result, tmp_path):
    with pytest.raises(UnknownSource, match=r"frame\(s\) 1, 3; frames done: 0, 2"):
        export_result_masks(tiled_server.client(), result, tmp_path, frames=[0, 1, 3])
    assert not list(tmp_path.iterdir())


def test_export_mask_command(tiled_server, result, tmp_path, capsys):
    tiled = ["--tiled", tiled_server.uri, "--api-key", tiled_server.api_key]
    rc = main(["export-mask", result, "--frame", "2", "--format", "npy", "--out",
               str(tmp_path), *tiled])
    assert rc == 0
    path = tmp_path / f"{result}_00002_mask.npy"
    assert capsys.readouterr().out.split() == [str(path)]
    assert np.array_equal(np.load(path), _codes(2) != 0)
    assert main(["export-mask", "no-such-run", *tiled]) == 2
    assert "no xrd_mask results for no-such-run" in capsys.readouterr().err
