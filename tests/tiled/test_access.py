"""check_writable against real Tiled servers: a writable catalog (nothing left behind) and a
catalog without writable storage, as `python -m tiled_adapters serve` makes (one clear error)."""

from __future__ import annotations

import pytest

from xrd_bluesky_mask.errors import TiledAuthError
from xrd_bluesky_mask.testing import serve_tiled
from xrd_bluesky_mask.tiled.access import check_writable

READ_ONLY = """\
trees:
  - path: /
    tree: catalog
    args:
      uri: "sqlite:///{catalog}/catalog.db"
      init_if_not_exists: true
      readable_storage:
        - "{catalog}"
"""


def test_a_writable_server_passes_and_keeps_nothing() -> None:
    with serve_tiled() as server:
        client = server.client()
        check_writable(client, uri=server.uri)
        assert list(client) == []


@pytest.fixture(scope="module")
def read_only_server(tmp_path_factory):
    """``tiled serve config`` with a catalog that has no writable storage."""
    folder = tmp_path_factory.mktemp("read_only")
    config = folder / "read_only.yml"
    config.write_text(READ_ONLY.format(catalog=folder))
    with serve_tiled(folder, config=config) as server:
        yield server


def test_a_read_only_catalog_is_one_clear_error_and_nothing_written(read_only_server) -> None:
    server = read_only_server
    client = server.client()
    with pytest.raises(TiledAuthError, match="does not let results be written") as info:
        check_writable(client, uri=server.uri)
    assert "tiled_adapters/serve_frames.yml" in str(info.value)
    assert list(client) == []


def test_reprocess_on_a_read_only_catalog_fails_up_front(read_only_server, capsys) -> None:
    from xrd_bluesky_mask.cli import main

    server = read_only_server
    argv = ["reprocess", "--node", "frames/scan", "--tiled", server.uri, "--api-key",
            server.api_key, "--masker", "classical", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not let results be written" in err and "nothing was written" in err
    assert list(server.client()) == []
