"""Result versions: settings identity, new versions beside old ones, shared writers."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from tests.tiled.test_results import BINS, H, W, _codes, _pattern
from xrd_bluesky_mask.provenance import provenance, settings_id
from xrd_bluesky_mask.sinks.tiled import TiledResultSink
from xrd_bluesky_mask.sinks.tiled_layout import StorageBlocked
from xrd_bluesky_mask.tiled.results import (
    find_results,
    load_masks,
    result_key,
    result_versions,
)

PONI = "# calibrated today\nDistance: 0.1\nPoni1: 0.01\n"


def _md(uid: str, n_sigma: float = 3.0, device: str = "cpu", poni: str = PONI,
        expected: int | None = 3) -> dict:
    return provenance(uid, stream="primary", field="det", poni=poni,
                      masker_settings={"masker": "classical", "n_sigma": n_sigma,
                                       "device": device},
                      integration={"npt": BINS}, frames_expected=expected, frame_shape=(H, W))


def test_settings_id_follows_what_changes_results():
    uid = "u"
    base = settings_id(_md(uid))
    assert len(base) == 16
    assert settings_id(_md(uid, device="cuda:0")) == base  # same model elsewhere
    assert settings_id(_md(uid, poni="Distance: 0.1\n\n  Poni1: 0.01\n")) == base  # comments
    assert settings_id(_md(uid, n_sigma=3)) == base  # 3 == 3.0
    assert settings_id(_md(uid, n_sigma=4.0)) != base
    assert settings_id(_md(uid, poni="Distance: 0.2\nPoni1: 0.01\n")) != base
    legacy = {k: v for k, v in _md(uid).items() if k != "settings_id"}  # a schema-1 node
    assert settings_id(legacy) == base


def test_result_keys():
    uid = str(uuid.uuid4())
    assert result_key(uid) == uid and result_key(uid, 2) == f"{uid}_v2"
    key = result_key("raw/sample a/frames")
    assert key.startswith("raw.sample.a.frames-") and "/" not in key
    assert result_key("raw/sample a/frames") != result_key("raw/sample.a/frames")


def _write(sink: TiledResultSink, uid: str, md: dict, frames, status="complete") -> None:
    sink.open_run(uid, md)
    for i in frames:
        sink.write(uid, i, _codes(i), _pattern(i))
    sink.close_run(uid, status, {})


def test_new_settings_add_a_version_same_settings_resume(tiled_server):
    uid = str(uuid.uuid4())
    client = tiled_server.client()
    _write(TiledResultSink(client), uid, _md(uid), [0, 1, 2])
    sink = TiledResultSink(client)
    sink.open_run(uid, _md(uid, n_sigma=5.0))  # new settings: version 2 beside version 1
    assert sink.result_version(uid) == 2 and sink.result_path(uid).endswith(f"{uid}_v2")
    assert sink.done(uid) == set()
    sink.write(uid, 0, np.ones((H, W), np.uint8), _pattern(7))
    sink.close_run(uid, "running", {})
    again = TiledResultSink(client)
    again.open_run(uid, _md(uid, device="cuda:0"))  # the settings of version 1: resumed
    assert again.result_version(uid) == 1 and again.done(uid) == {0, 1, 2}
    again.close_run(uid, "complete", {})

    fresh = tiled_server.client()
    versions = result_versions(fresh, uid)
    assert [v for v, _ in versions] == [1, 2]
    assert find_results(fresh, uid).metadata["result_version"] == 2  # newest by default
    assert find_results(fresh, uid, version=1).metadata["frames_done"] == [0, 1, 2]
    assert load_masks(fresh, uid)[0].max() == 1 and load_masks(fresh, uid, version=1)[1, 1, 0] == 1
    with pytest.raises(KeyError, match="no version 3; versions: 1, 2"):
        find_results(fresh, uid, version=3)

    from tiled.client import from_uri
    from tiled.queries import Key

    plain = from_uri(tiled_server.uri, api_key=tiled_server.api_key)  # no helper needed
    hits = plain["derived/xrd_mask"].search(Key("source_uid") == uid)
    assert sorted(hits) == [uid, f"{uid}_v2"]
    assert {n.metadata["settings_id"] for n in hits.values()} == {
        settings_id(_md(uid)), settings_id(_md(uid, n_sigma=5.0))}


def test_errors_of_an_earlier_session_are_replaced(tiled_server):
    uid = str(uuid.uuid4())
    sink = TiledResultSink(tiled_server.client())
    sink.open_run(uid, _md(uid))
    sink.write(uid, 0, _codes(0), _pattern(0))
    sink.close_run(uid, "complete_with_errors", {1: "FrameError: empty", "run": "x"})
    sink.open_run(uid, _md(uid))
    sink.write(uid, 1, _codes(1), _pattern(1))
    sink.close_run(uid, "complete_with_errors", {2: "boom"})
    md = find_results(tiled_server.client(), uid).metadata
    assert md["errors"] == {"2": "boom"} and md["frames_done"] == [0, 1]


def test_concurrent_openers_with_the_same_new_settings_share_one_version(tiled_server):
    uid = str(uuid.uuid4())
    _write(TiledResultSink(tiled_server.client()), uid, _md(uid), [0])
    paths, errors = [], []

    def open_it() -> None:
        try:
            sink = TiledResultSink(tiled_server.client())
            sink.open_run(uid, _md(uid, n_sigma=6.0))
            paths.append(sink.result_path(uid))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1 and paths[0].endswith("_v2")
    assert [v for v, _ in result_versions(tiled_server.client(), uid)] == [1, 2]


def test_attached_writers_fill_arrays_the_owner_records_progress(tiled_server):
    uid = str(uuid.uuid4())
    owner = TiledResultSink(tiled_server.client(), progress_interval=0)
    owner.open_run(uid, _md(uid, expected=4))
    path = owner.result_path(uid)
    marked: list[int] = []
    for frames in ([0, 1], [2, 3]):  # e.g. two Dask tasks, arrays created by whichever first
        helper = TiledResultSink(tiled_server.client(), progress_interval=0)
        helper.attach(uid, path, 4)
        for i in frames:
            helper.write(uid, i, _codes(i), _pattern(i))
        helper.close_run(uid, "ignored", {})
        assert find_results(tiled_server.client(), uid).metadata["frames_done"] == marked
        owner.mark_done(uid, frames)
        marked += frames
    owner.close_run(uid, "complete", {})
    node = find_results(tiled_server.client(), uid)
    assert node.metadata["frames_done"] == [0, 1, 2, 3] and node.metadata["status"] == "complete"
    assert node["mask"].shape == (4, H, W)
    np.testing.assert_array_equal(node["mask"][3], _codes(3))
    np.testing.assert_allclose(node["pattern"].read()["intensity"][2], 12.0)


def _orphan_storage(server, path: str) -> None:
    """What a server SIGKILLed while creating the array at ``path`` leaves: its zarr store on
    disk (tiled writes it before committing the node), no node in the catalog."""
    import zarr

    directory = server.directory / "data" / path
    zarr.create_array(str(directory), shape=(1, H, W), chunks=(1, H, W), dtype="uint8")


@pytest.mark.parametrize("blocked", ["mask", "pattern/intensity", "pattern/q"])
def test_storage_left_by_a_killed_creation_moves_the_run_to_a_new_version(
        tiled_server, short_client_retries, caplog, blocked):
    uid = str(uuid.uuid4())
    root = f"derived/blocked-{uuid.uuid4().hex[:6]}"
    sink = TiledResultSink(tiled_server.client(), root=root)
    sink.open_run(uid, _md(uid))
    _orphan_storage(tiled_server, f"{sink.result_path(uid)}/{blocked}")
    with caplog.at_level("WARNING", logger="xrd_bluesky_mask"):
        for i in range(3):
            sink.write(uid, i, _codes(i), _pattern(i))
    assert sink.result_version(uid) == 2
    sink.close_run(uid, "complete", {})
    assert f"{root}/{uid}/{blocked}" in caplog.text and "version 2" in caplog.text

    fresh = tiled_server.client()
    old, new = (node for _, node in result_versions(fresh, uid, root=root))
    assert old.metadata["status"] == "superseded"
    assert old.metadata["superseded_by"] == f"{root}/{uid}_v2"
    assert new.metadata["status"] == "complete" and new.metadata["frames_done"] == [0, 1, 2]
    assert new.metadata["settings_id"] == old.metadata["settings_id"]
    assert find_results(fresh, uid, root=root).metadata["result_version"] == 2
    np.testing.assert_array_equal(load_masks(fresh, uid, root=root),
                                  np.stack([_codes(i) for i in range(3)]))
    again = TiledResultSink(fresh, root=root)  # the same settings resume the new version
    again.open_run(uid, _md(uid))
    assert again.result_version(uid) == 2 and again.done(uid) == {0, 1, 2}
    again.close_run(uid, "complete", {})


def test_an_attached_writer_cannot_move_the_run_and_says_why(
        tiled_server, short_client_retries):
    uid = str(uuid.uuid4())
    root = f"derived/blocked-{uuid.uuid4().hex[:6]}"
    owner = TiledResultSink(tiled_server.client(), root=root, progress_interval=0)
    owner.open_run(uid, _md(uid))
    helper = TiledResultSink(tiled_server.client(), root=root)  # a Dask task's writer
    helper.attach(uid, owner.result_path(uid), 3)
    _orphan_storage(tiled_server, f"{owner.result_path(uid)}/mask")
    with pytest.raises(StorageBlocked, match="holds data left by a creation"):
        helper.write(uid, 0, _codes(0), _pattern(0))


def test_a_table_created_but_never_written_is_rewritten_and_its_frames_done_again(
        tiled_server, short_client_retries, caplog):
    """What a writer killed inside ``write_table`` leaves (the table created, its rows never
    sent: the server answers HTTP 500 to every read) does not stop the version's resumption:
    its frames are done again and the table rewritten whole."""
    import pandas as pd
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource
    from tiled.structures.table import TableStructure

    uid = str(uuid.uuid4())
    root = f"derived/tables-{uuid.uuid4().hex[:6]}"
    first = TiledResultSink(tiled_server.client(), root=root, progress_interval=0)
    first.open_run(uid, _md(uid))
    for i in range(3):
        first.write(uid, i, _codes(i), _pattern(i))
    node = tiled_server.client()[first.result_path(uid)]
    assert node.metadata["frames_done"] == [0, 1, 2]
    node["frames"].delete(external_only=False)  # the first write of the tables, cut short:
    df = pd.DataFrame({"frame": [0], "n_spots": [1]})
    node.new(StructureFamily.table, [DataSource(structure=TableStructure.from_pandas(df),
                                                structure_family=StructureFamily.table)],
             key="frames")  # ... and the writer is killed before its rows
    with pytest.raises(Exception, match="500"):
        node["frames"].read()

    again = TiledResultSink(tiled_server.client(), root=root)
    with caplog.at_level("WARNING", logger="xrd_bluesky_mask"):
        again.open_run(uid, _md(uid))
    assert again.result_version(uid) == 1 and again.done(uid) == set()
    assert "frames table" in caplog.text and "done again" in caplog.text
    for i in range(3):
        again.write(uid, i, _codes(i), _pattern(i))
    again.close_run(uid, "complete", {})
    node = find_results(tiled_server.client(), uid, root=root)
    assert node.metadata["status"] == "complete" and node.metadata["frames_done"] == [0, 1, 2]
    assert len(node["frames"].read()) == 0  # readable again (no tables were given here)
    np.testing.assert_array_equal(load_masks(tiled_server.client(), uid, root=root),
                                  np.stack([_codes(i) for i in range(3)]))


@pytest.mark.parametrize("coord", ["two_theta", "q"])
def test_a_coordinate_created_but_never_written_is_written_again(tiled_server, caplog, coord):
    """What a writer killed inside ``write_array`` leaves (the coordinate created, its values
    never sent: it reads zeros) is written again by the next writer, not kept on the 409."""
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    uid = str(uuid.uuid4())
    root = f"derived/coords-{uuid.uuid4().hex[:6]}"
    first = TiledResultSink(tiled_server.client(), root=root, progress_interval=0)
    first.open_run(uid, _md(uid))
    first.write(uid, 0, _codes(0), _pattern(0))
    pattern = tiled_server.client()[first.result_path(uid)]["pattern"]
    pattern[coord].delete(external_only=False)
    structure = ArrayStructure(shape=(BINS,), chunks=((BINS,),), dims=("radial",),
                               data_type=BuiltinDtype.from_numpy_dtype(np.dtype("float64")))
    pattern.new(StructureFamily.array, [DataSource(structure=structure,
                                                   structure_family=StructureFamily.array)],
                key=coord, specs=["xarray_coord"])  # ... and the writer is killed here
    assert not pattern[coord].read().any()

    again = TiledResultSink(tiled_server.client(), root=root)
    with caplog.at_level("WARNING", logger="xrd_bluesky_mask"):
        again.open_run(uid, _md(uid))
        for i in range(1, 3):
            again.write(uid, i, _codes(i), _pattern(i))
    again.close_run(uid, "complete", {})
    assert f"{coord} coordinate" in caplog.text and "written again" in caplog.text
    stored = find_results(tiled_server.client(), uid, root=root)["pattern"][coord].read()
    np.testing.assert_array_equal(stored, _pattern(0).coords[coord].values)
