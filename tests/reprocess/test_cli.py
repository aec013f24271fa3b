"""``xrd-mask reprocess``: a run by uid and a node, and clear errors for what cannot work."""

from __future__ import annotations

import uuid

from tests.reprocess.test_reprocess import _series
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.testing import free_port
from xrd_bluesky_mask.tiled.results import find_results


def test_reprocess_command(stored_run, tiled_server, tmp_path, capsys):
    uid, sample, _ = stored_run
    client = tiled_server.client()
    node, _, _ = _series(client, "series", 2)
    root = f"derived/cli_{uuid.uuid4().hex[:6]}"
    args = ["--tiled", tiled_server.uri, "--api-key", tiled_server.api_key, "--root", root,
            "--masker", "classical", "--no-progress"]
    assert main(["reprocess", uid, "--node", node, *args]) == 0
    out = capsys.readouterr().out
    assert uid[:8] in out and node[-8:] in out and "complete" in out
    # where each result is: its path, and the URL a plain client or curl reads
    assert f"result version 1 at {root}/{uid} ({tiled_server.uri}/metadata/{root}/{uid})" in out
    assert find_results(client, uid, root=root).metadata["frames_done"] == [0, 1, 2, 3]
    assert find_results(client, node, root=root).metadata["status"] == "complete"
    assert main(["reprocess", "--query", f"sample={sample}", *args, "--n-sigma", "5"]) == 0
    out = capsys.readouterr().out
    assert "v2*" in out and f"result version 2 at {root}/{uid}_v2" in out
    # export-mask with two versions says which one it took
    tiled = args[:4] + ["--root", root]
    assert main(["export-mask", uid, "--frame", "0", "--out", str(tmp_path), *tiled]) == 0
    assert (f"exported result version 2 of {uid} (the newest; --version N for another; "
            "versions: 1, 2)") in capsys.readouterr().err
    assert main(["export-mask", uid, "--frame", "0", "--out", str(tmp_path), *tiled,
                 "--version", "1"]) == 0
    assert f"exported result version 1 of {uid} (--version;" in capsys.readouterr().err


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_reprocess_command_errors(stored_run, tiled_server, tmp_path, capsys):
    uid, _, _ = stored_run
    good = ["--tiled", tiled_server.uri, "--api-key", tiled_server.api_key,
            "--masker", "classical", "--no-progress"]
    down = f"http://127.0.0.1:{free_port()}/api/v1"
    assert "no Tiled server answers" in _error(["reprocess", uid, "--tiled", down], capsys)
    err = _error(["reprocess", uid, "--tiled", tiled_server.uri, "--api-key", "wrong123"],
                 capsys)
    assert "refused the API key" in err
    err = _error(["reprocess", "0000-not-a-run", *good], capsys)
    assert "nothing at '0000-not-a-run'" in err and "full start uid" in err
    err = _error(["reprocess", uid, *good, "--poni", str(tmp_path / "none.poni")], capsys)
    assert "PONI file" in err and "not found" in err
    bare, _, _ = _series(tiled_server.client(), "series", 1, geometry=False)
    err = _error(["reprocess", "--node", bare, *good], capsys)
    assert "no detector geometry" in err and "--poni FILE" in err
    assert "KEY=VALUE" in _error(["reprocess", "--query", "sample", *good], capsys)
    assert "give run uids" in _error(["reprocess", *good], capsys)
    assert "--workers 0: must be at least 1" in _error(["reprocess", uid, *good, "--workers", "0"],
                                                       capsys)
    err = _error(["reprocess", uid, *good, "--masker", "no_such_module:Masker"], capsys)
    assert "--masker no_such_module:Masker: cannot import it" in err
    assert "--npt 3: should be greater than or equal to 16" in _error(
        ["reprocess", uid, *good, "--npt", "3"], capsys)
