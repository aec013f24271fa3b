"""The IPython beamline profile: its settings, its startup files run headlessly against the
embedded server (``runpy``, in order), and ``ipython --profile-dir=profiles/profile_xrd`` itself."""

from __future__ import annotations

import json
import os
import queue
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from xrd_bluesky_mask.apps.profile_settings import ProfileSettings, load_settings
from xrd_bluesky_mask.errors import InputFileError, XRDMaskError

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "profile_xrd"
STARTUP = sorted((PROFILE / "startup").glob("*.py"))


def _settings_file(tmp_path: Path, *, shape: int = 128, extra: str = "") -> Path:
    path = tmp_path / "xrd_settings.toml"
    path.write_text(textwrap.dedent(f"""\
        data_dir = "data"
        [run_engine]
        metadata = {{ beamline_id = "test" }}
        [detector]
        shape = [{shape}, {shape}]
        [masking]
        masker = "classical"
        """) + extra)
    return path


def test_the_shipped_settings_file_is_valid_and_documents_every_key():
    settings = load_settings(PROFILE / "xrd_settings.toml", environ={})
    assert settings.tiled.uri == "" and settings.masking.masker == "unet"
    text = (PROFILE / "xrd_settings.toml").read_text()
    for section in ("tiled", "run_engine", "detector", "masking"):
        model = ProfileSettings.model_fields[section].annotation.model_fields
        for key in model:
            assert f"{key} =" in text, f"[{section}] {key} is not documented"


def test_environment_wins_over_the_file(tmp_path):
    path = _settings_file(tmp_path)
    env = {"XRD_TILED_URI": "http://tiled:8000/api/v1", "TILED_URI": "http://other/api/v1",
           "TILED_API_KEY": "k3y", "XRD_MASKER": "unet", "XRD_DETECTOR_SHAPE": "64 x 96",
           "XRD_DATA_DIR": "/srv/xrd"}
    s = load_settings(path, environ=env)
    assert s.tiled.uri == "http://tiled:8000/api/v1" and s.tiled.api_key == "k3y"
    assert s.masking.masker == "unet" and s.detector.shape == (64, 96)
    assert s.data_path == Path("/srv/xrd")
    assert load_settings(path, environ={}).data_path == (tmp_path / "data").resolve()
    (tmp_path / "other").mkdir()
    other = _settings_file(tmp_path / "other", shape=32)
    assert load_settings(None, environ={"XRD_SETTINGS": str(other)}).detector.shape == (32, 32)


def _declared_variables(model=ProfileSettings, where=()) -> dict[str, tuple[str, ...]]:
    """Environment variable -> the setting's path, from the `Env` markers."""
    from pydantic import BaseModel

    from xrd_bluesky_mask.apps.profile_settings import Env

    out = {}
    for name, info in model.model_fields.items():
        for marker in (m for m in info.metadata if isinstance(m, Env)):
            out.update(dict.fromkeys(marker.names, (*where, name)))
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out.update(_declared_variables(info.annotation, (*where, name)))
    return out


def test_the_variables_the_settings_file_documents_are_the_ones_read():
    header = (PROFILE / "xrd_settings.toml").read_text().split("\n\n")[0]
    documented = set(re.findall(r"\b((?:XRD|TILED)_[A-Z_]+)\b", header)) - {"XRD_SETTINGS"}
    assert set(_declared_variables()) == documented
    assert _declared_variables()["XRD_MASKER"] == ("masking", "masker")


def test_other_variables_change_nothing(tmp_path):
    path = _settings_file(tmp_path)
    noise = {"DATA_DIR": "/x", "data_dir": "/x", "TILED": '{"uri": "http://x"}',
             "MASKER": "unet", "SOURCE": "x", "XRD_MASKING__MASKER": "unet",
             "TILED_RETRY_ATTEMPTS": "3", "XRD_MASKER": "", "TILED_API_KEY": ""}
    assert load_settings(path, environ=noise) == load_settings(path, environ={})


@pytest.mark.parametrize("extra, match", [
    ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
    ("[tiled]\nurl = 'http://x'\n", "tiled.url: Extra inputs"),
    ("[tiled]\nembedded_mode = 'fast'\n", "tiled.embedded_mode"),
])
def test_unknown_or_bad_keys_fail_at_load_time(tmp_path, extra, match):
    with pytest.raises(XRDMaskError, match=match) as info:
        load_settings(_settings_file(tmp_path, extra=extra), environ={})
    assert "xrd_settings.toml" in str(info.value)


def test_missing_or_broken_settings_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[tiled\n")
    with pytest.raises(InputFileError, match="not valid TOML"):
        load_settings(bad, environ={})


def test_an_unreachable_server_is_an_error_not_a_silent_local_catalog(tmp_path):
    import time

    from xrd_bluesky_mask.apps.profile import Beamline
    from xrd_bluesky_mask.errors import TiledConnectionError
    from xrd_bluesky_mask.testing import free_port

    uri = f"http://127.0.0.1:{free_port()}/api/v1"
    xrd = Beamline(load_settings(_settings_file(tmp_path), environ={"XRD_TILED_URI": uri}))
    t0 = time.perf_counter()
    with pytest.raises(TiledConnectionError, match="no Tiled server answers"):
        xrd.connect_tiled()
    assert time.perf_counter() - t0 < 10 and xrd.server is None and xrd.session is None
    with pytest.raises(RuntimeError, match="connect_tiled"):
        xrd.make_run_engine()


def test_a_masker_that_cannot_load_turns_masking_off_with_the_reason(tmp_path, tiled_server):
    from xrd_bluesky_mask.apps.profile import Beamline

    path = _settings_file(tmp_path)
    env = {"XRD_MASKER": "unet", "XRD_MODEL": str(tmp_path / "no_such_model"),
           "XRD_TILED_URI": tiled_server.uri, "TILED_API_KEY": tiled_server.api_key}
    xrd = Beamline(load_settings(path, environ=env))
    try:
        xrd.connect_tiled()
        RE = xrd.make_run_engine()
        assert xrd.start_masking() is None and xrd.callback is None
        assert "masker 'unet' unusable" in xrd.masking_error
        assert "no_such_model" in xrd.masking_error
        assert "masking   OFF: masker 'unet' unusable" in xrd.banner()
    finally:
        xrd.close()
    assert xrd.session is None and not RE._th.is_alive()
    xrd.close()  # idempotent


# the README's retraining snippet runs in it too: a short training and a held-out scoring
@pytest.mark.timeout(300)
def test_startup_files_headless_then_count_gives_derived_results(
        tmp_path, monkeypatch, capsys, caplog, tiled_server, live_base):
    """Against a running server named by the environment (the session's, which reads
    ``live_base/raw``); the embedded fallback is what the IPython test below uses."""
    from xrd_bluesky_mask.tiled.results import (
        find_results,
        load_masks,
        load_patterns,
        load_tables,
    )

    monkeypatch.setenv("XRD_SETTINGS", str(_settings_file(tmp_path)))
    monkeypatch.setenv("XRD_TILED_URI", tiled_server.uri)
    monkeypatch.setenv("TILED_API_KEY", tiled_server.api_key)
    monkeypatch.setenv("XRD_DATA_DIR", str(live_base))
    for var in ("TILED_URI", "XRD_MASKER", "XRD_MODEL", "XRD_DETECTOR_SHAPE"):
        monkeypatch.delenv(var, raising=False)
    assert [p.name[:3] for p in STARTUP] == ["00-", "10-", "20-", "30-", "40-", "50-", "99-"]
    from bluesky import RunEngine

    subscribed: list = []
    original = RunEngine.subscribe

    def spy(self, func, name="all"):
        subscribed.append(func)
        return original(self, func, name)

    monkeypatch.setattr(RunEngine, "subscribe", spy)
    ns: dict = {}
    try:
        for path in STARTUP:
            ns = runpy.run_path(str(path), init_globals=ns)
        xrd, RE, det, client = ns["xrd"], ns["RE"], ns["det"], ns["tiled_client"]
        banner = capsys.readouterr().out
        assert xrd.server is None and f"Tiled     {tiled_server.uri} (remote)" in banner
        assert "masking   classical" in banner
        assert "detector  det: simulated 128 x 128" in banner
        assert "count" in ns["xrd_plans"] and callable(ns["count"])
        # the test environment has every extra: the retraining plans must be there
        assert "retrain" in ns["xrd_plans"] and not ns["xrd_plans_note"]
        assert callable(ns["retrain"]) and callable(ns["set_model"])
        # TiledWriter first, then the masking callback (it reads what TiledWriter registered)
        assert subscribed.index(xrd.tiled_writer) < subscribed.index(xrd.callback)

        uids = RE(ns["count"]([det], 3))
        node = xrd.results(uids[0])
        assert node.metadata["status"] == "complete", node.metadata.get("errors")
        assert node.metadata["frames_done"] == [0, 1, 2]
        assert xrd.results(-1).metadata["source_uid"] == uids[0]
        assert find_results(client, uids[0]).metadata["masker"]["masker"] == "classical"
        masks = load_masks(client, uids[0])
        assert masks.shape == (3, 128, 128) and masks.dtype == np.uint8
        assert set(np.unique(masks)) <= {0, 1, 2} and (masks == 1).any()
        patterns = load_patterns(client, uids[0])
        assert patterns.sizes["frame"] == 3 and "two_theta" in patterns.coords
        assert client[uids[0]].metadata["start"]["beamline_id"] == "test"
        # the live view drew a point per frame of the scan, from the result documents
        view = ns["xrd_view"]
        assert [r["frame"] for r in view.rows[uids[0]]] == [0, 1, 2]
        assert [r["spot_count"] for r in view.rows[uids[0]]] == \
            load_tables(client, uids[0])["frames"]["spot_count"].tolist()
        _check_readme_http(xrd.uri, tiled_server.api_key, uids[0])
        _check_readme_retrain(ns, tmp_path, monkeypatch, caplog)
    finally:
        if "xrd" in ns:
            ns["xrd"].close()


def _check_readme_retrain(ns: dict, tmp_path: Path, monkeypatch, caplog) -> None:
    """The retraining snippet of docs/beamline.md, with the profile's names as written
    (small settings so that it takes seconds; a temporary model registry)."""
    from xrd_bluesky_mask.retrain import RetrainSettings

    monkeypatch.setenv("XRD_MASK_MODELS", str(tmp_path / "registry"))
    xrd, RE, client = ns["xrd"], ns["RE"], ns["tiled_client"]
    uid = xrd.results().metadata["source_uid"]
    ns["accept_masks"](client, uid, frames=[0, 1, 2])
    small = RetrainSettings(epochs=2, batch_size=2, window=64, min_spot_px=1)
    (retrain_uid,) = RE(ns["retrain"](ns["annotated_runs"](client), settings=small,
                                      callback=ns["xrd_callback"]))
    row = client[retrain_uid]["result"].read()
    assert int(row["model_version"][0]) == 1
    assert client[retrain_uid].metadata["stop"]["exit_status"] == "success"
    # one INFO line per epoch (the profile shows them; here pytest's handler catches them)
    said = [r.getMessage() for r in caplog.records if r.name == "xrd_bluesky_mask.bluesky.plans"]
    assert any(m.startswith("retrain: epoch 1/2") for m in said), said
    assert any(m.startswith("retrain: epoch 2/2") for m in said), said
    RE(ns["set_model"]("default", callback=ns["xrd_callback"]))


def _check_readme_http(base: str, api_key: str, uid: str) -> None:
    """The HTTP examples of docs/live-and-tiled.md, against the profile's server."""
    with httpx.Client(headers={"Authorization": f"Apikey {api_key}"}, timeout=30,
                      trust_env=False) as http:
        md = http.get(f"{base}/metadata/derived/xrd_mask/{uid}").json()
        assert md["data"]["attributes"]["metadata"]["status"] == "complete"
        hits = http.get(f"{base}/search/derived/xrd_mask",
                        params={"filter[eq][condition][key]": "source_uid",
                                "filter[eq][condition][value]": json.dumps(uid),
                                "fields": ""}).json()
        assert [d["id"] for d in hits["data"]] == [uid]
        raw = http.get(f"{base}/array/full/derived/xrd_mask/{uid}/mask",
                       params={"slice": "0", "format": "application/octet-stream"})
        assert raw.status_code == 200 and len(raw.content) == 128 * 128
        part = http.get(f"{base}/array/full/derived/xrd_mask/{uid}/pattern/intensity",
                        params={"slice": "0,0:5", "format": "application/json"})
        assert part.status_code == 200 and len(part.json()) == 5
        csv = http.get(f"{base}/array/full/derived/xrd_mask/{uid}/pattern/two_theta",
                       params={"format": "text/csv"})
        assert csv.status_code == 200 and len(csv.text.split()) > 10


def test_ipython_profile_dir_starts_counts_and_exits(tmp_path):
    """``ipython --profile-dir=...`` (a copy, so IPython's history stays out of the repo)."""
    profile = tmp_path / "profile_xrd"
    shutil.copytree(PROFILE, profile, ignore=shutil.ignore_patterns(
        "history.sqlite*", "log", "pid", "security", "db"))
    code = ("uids = RE(count([det], 2)); node = xrd.results(uids[0]); "
            "print('RESULT', node.metadata['status'], node['mask'].shape); "
            "from xrd_bluesky_mask.masking import get_masker; "
            "s = reprocess(tiled_client, uids, masker=get_masker('classical', n_sigma=5), "
            "progress=False); "
            "print('REPROCESSED', s.ok, s.runs[0].result_path); print('UID', uids[0])")
    env = {**os.environ, "XRD_SETTINGS": str(_settings_file(tmp_path, shape=96)),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    for var in ("XRD_TILED_URI", "TILED_URI", "XRD_MASKER", "XRD_MODEL", "XRD_DATA_DIR"):
        env.pop(var, None)
    ipython = Path(sys.executable).with_name("ipython")
    done = subprocess.run([str(ipython), f"--profile-dir={profile}", "--no-banner", "-c", code],
                          capture_output=True, text=True, timeout=100, env=env,
                          cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "xrd-bluesky-mask beamline profile" in out and "masking   classical" in out
    assert "(embedded, catalog in" in out
    assert "RESULT complete (2, 96, 96)" in out, out[-3000:]
    assert "pyOpenCl" not in out  # a warning nobody can act on
    uid = out.split("\nUID ", 1)[1].split()[0]
    assert f"REPROCESSED True derived/xrd_mask/{uid}_v2" in out
    # after IPython exited: the banner's 'reopen' command serves the catalog again, and
    # `xrd-mask reprocess UID` reaches it with the URI and key that command prints
    reopen = next(line for line in out.splitlines() if line.startswith("  reopen"))
    argv = shlex.split(reopen.split(None, 1)[1].split("   (")[0])
    assert argv[:2] == ["xrd-mask", "serve"]
    xrd_mask = str(Path(sys.executable).with_name("xrd-mask"))
    env.pop("TILED_API_KEY", None)
    server = subprocess.Popen([xrd_mask, *argv[1:]], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.STDOUT, env=env)
    # read the server's output in a thread all along: its access log would otherwise fill the
    # pipe during the reprocess and block the server (and its Ctrl-C) on a write
    lines: queue.Queue[str] = queue.Queue()
    assert server.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in server.stdout or ()],
                     daemon=True).start()
    try:
        printed = [lines.get(timeout=120) for _ in range(5)]
        exports = next(line for line in printed if "export TILED_URI=" in line)
        uri, key = (part.split("=", 1)[1] for part in exports.split()[1:3])
        done = subprocess.run([xrd_mask, "reprocess", uid, "--masker", "classical",
                               "--no-progress"], capture_output=True, text=True, timeout=120,
                              env={**env, "TILED_URI": uri, "TILED_API_KEY": key})
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"at derived/xrd_mask/{uid}" in done.stdout and uri in done.stdout
    finally:
        server.send_signal(signal.SIGINT)
        try:  # a loaded machine can take a while to stop the server; never leave it running
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
