"""Run backups (TiledWriter's JSON Lines files while Tiled is away) and their replay: what
waits, and ``xrd-mask replay`` writing them into a real (in-process) Tiled server. The whole
path with a killed server and a RunEngine: tests/bluesky/test_outage.py."""

from __future__ import annotations

import uuid

from bluesky_tiled_plugins import TiledWriter

from tests.bluesky.outage_helpers import run_documents as _run_documents
from tests.bluesky.outage_helpers import write_backup as _write
from xrd_bluesky_mask.bluesky.backup import RunBackups, backup_folder_for, default_backup_dir
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.tiled.nodes import container_at


def test_backups_say_what_waits_complete_or_not(tmp_path):
    backups = RunBackups(tmp_path / "b")
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700  # the user's alone
    assert backups.files() == [] and backups.summary() == ""
    done, cut = _run_documents(), _run_documents()
    _write(tmp_path / "b" / "done.jsonl", done)
    _write(tmp_path / "b" / "cut.jsonl", cut[:3])
    with open(tmp_path / "b" / "cut.jsonl", "a") as fh:
        fh.write('{"name": "event", "doc": {"uid"')  # the writing process died mid-line
    files = {f.path.name: f for f in backups.files()}
    assert files["done.jsonl"].complete and files["done.jsonl"].documents == 6
    assert files["done.jsonl"].uid == done[0][1]["uid"]
    assert not files["cut.jsonl"].complete and files["cut.jsonl"].documents == 3
    assert "no stop document" in files["cut.jsonl"].describe()
    assert [f.path.name for f in backups.waiting(include_incomplete=False)] == ["done.jsonl"]
    assert "2 raw runs wait in" in backups.summary() and "1 complete" in backups.summary()


def test_the_backup_folder_is_per_server_and_container(monkeypatch, tmp_path):
    monkeypatch.setenv("XRD_MASK_RUN_BACKUP", str(tmp_path))
    assert default_backup_dir() == tmp_path
    a = backup_folder_for("http://h:8000/api/v1?api_key=k", "raw")
    assert a == backup_folder_for("http://h:8000/api/v1/", "/raw/")
    assert a.parent == tmp_path and a != backup_folder_for("http://h:8000/api/v1", "")


def test_replay_writes_the_whole_run_over_its_partial_copy(tiled_server, tiled_client,
                                                           tmp_path, capsys):
    catalog = f"replay-{uuid.uuid4().hex[:8]}"
    runs = container_at(tiled_client, catalog)
    partial, fresh, unfinished = _run_documents(4), _run_documents(2), _run_documents(2)
    writer = TiledWriter(runs, batch_size=1)  # what reached Tiled before the outage
    for name, doc in partial[:4]:
        writer(name, doc)
    folder = tmp_path / "backup"
    RunBackups(folder)
    _write(folder / "partial.jsonl", partial)
    _write(folder / "fresh.jsonl", fresh)
    _write(folder / "unfinished.jsonl", unfinished[:-1])  # no stop document
    common = ["--tiled", tiled_server.uri, "--api-key", tiled_server.api_key,
              "--catalog", catalog, "--backup", str(folder)]
    assert main(["replay", "--list", *common]) == 0
    assert "no stop document yet" in capsys.readouterr().out
    assert len(list(folder.glob("*.jsonl"))) == 3  # --list changes nothing

    assert main(["replay", *common]) == 0
    out = capsys.readouterr().out
    assert "2 runs replayed; 1 backups left" in out and "skipped unfinished.jsonl" in out
    runs = tiled_client[catalog]
    for docs in (partial, fresh):
        run = runs[docs[0][1]["uid"]]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert list(run["primary"].read()["x"].values) == [float(i)
                                                            for i in range(len(docs) - 3)]
    assert [p.name for p in folder.glob("*.jsonl")] == ["unfinished.jsonl"]
    assert unfinished[0][1]["uid"] not in runs
