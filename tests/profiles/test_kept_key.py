"""The profile's embedded server keeps its API key with its catalog: the same key in the next
session and in ``xrd-mask serve``, in a file only its owner can read."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from xrd_bluesky_mask.apps.profile_settings import load_settings
from xrd_bluesky_mask.tiled.api_keys import API_KEY_FILE, kept_api_key


def test_a_kept_key_is_made_once_private_and_read_back(tmp_path, caplog) -> None:
    folder = tmp_path / "catalog"
    assert kept_api_key(folder, create=False) is None and not folder.exists()
    key = kept_api_key(folder)
    path = folder / API_KEY_FILE
    assert key is not None and len(key) == 32 and key.isalnum()
    assert path.stat().st_mode & 0o777 == 0o600
    assert kept_api_key(folder) == key == kept_api_key(folder, create=False)
    assert kept_api_key(tmp_path / "other") != key

    path.chmod(0o644)  # e.g. copied with a permissive umask
    with caplog.at_level(logging.WARNING, logger="xrd_bluesky_mask.tiled.api_keys"):
        assert kept_api_key(folder) == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert "readable by others" in caplog.text

    path.write_text("not a key!\n")
    with pytest.raises(ValueError, match="holds no valid API key.*delete the file"):
        kept_api_key(folder)


def _beamline(tmp_path: Path):
    from xrd_bluesky_mask.apps.profile import Beamline

    settings = tmp_path / "xrd_settings.toml"
    settings.write_text(textwrap.dedent("""\
        data_dir = "data"
        [tiled]
        embedded_mode = "process"
        [run_engine]
        persist_metadata = false
        [detector]
        shape = [64, 64]
        [masking]
        masker = "classical"
        """))
    return Beamline(load_settings(settings, environ={}))


def _answers(uri: str, key: str) -> int:
    return httpx.get(f"{uri}/search/", headers={"Authorization": f"Apikey {key}"},
                     timeout=30).status_code


@pytest.mark.timeout(240)
def test_the_profile_and_serve_use_the_key_kept_with_the_catalog(tmp_path) -> None:
    keys, catalog = [], None
    for _ in range(2):  # two sessions, one after the other
        xrd = _beamline(tmp_path)
        try:
            xrd.connect_tiled()
            assert xrd.server is not None
            catalog = xrd.server.directory
            keys.append(xrd.server.api_key)
            assert f"api key   {keys[-1]}" in xrd.banner()
            assert _answers(xrd.uri, keys[-1]) == 200
            assert _answers(xrd.uri, "wrong0key") == 401
        finally:
            xrd.close()
    assert catalog is not None and keys[0] == keys[1]
    assert (catalog / API_KEY_FILE).read_text().strip() == keys[0]
    assert (catalog / API_KEY_FILE).stat().st_mode & 0o777 == 0o600

    # after the sessions: `xrd-mask serve` on the catalog answers to the same key, even with
    # another key in the environment
    xrd_mask = str(Path(sys.executable).with_name("xrd-mask"))
    env = {**os.environ, "TILED_API_KEY": "someotherkey"}
    server = subprocess.Popen([xrd_mask, "serve", str(catalog)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert server.stdout is not None
        printed = [server.stdout.readline() for _ in range(2)]
        assert printed[1].strip() == f"API key: {keys[0]}", printed
        uri = printed[0].split(" at ", 1)[1].split()[0]
        assert _answers(uri, keys[0]) == 200
    finally:
        server.send_signal(signal.SIGINT)
        try:  # a loaded machine can take a while to stop the server; never leave it running
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
