"""A real Tiled server (``tiled serve config tiled_adapters/serve_frames.yml``) serving a folder
of simulated detector images, read by a real client and over plain HTTP."""

from __future__ import annotations

import logging
import os
import time
import warnings

import httpx
import numpy as np
import pytest

from tiled_adapters import NoGeometryWarning


def test_series_is_one_lazy_array_with_geometry(registered, frames_folder):
    node, _, _ = registered
    arr = node["scan"]
    assert arr.shape == (3, 256, 256) and arr.dtype == np.float32
    assert arr.dims == ("frame", "y", "x") and arr.chunks == ((1, 1, 1), (256,), (256,))
    np.testing.assert_array_equal(arr.read(), frames_folder.series)
    np.testing.assert_array_equal(arr[2], frames_folder.series[2])
    np.testing.assert_array_equal(arr[0:2, 10:20, 5], frames_folder.series[0:2, 10:20, 5])
    md = arr.metadata
    assert md["geometry"]["poni"] == frames_folder.poni
    assert md["geometry"]["poni_file"] == "scan.poni"
    assert md["detector_header"]["nRows"] == 256 and md["source"]["files"] == 3
    (source,) = arr.include_data_sources().data_sources()
    assert source.mimetype == "multipart/related;type=image/tiff"
    assert [a.data_uri.rsplit("/", 1)[-1] for a in source.assets] == [
        "scan_0001.tif", "scan_0002.tif", "scan_0003.tif"]


def test_single_edf_and_tiff_images(registered, frames_folder):
    node, _, _ = registered
    dark, flat = node["dark"], node["flat"]
    assert dark.shape == (256, 256) and dark.dtype == np.float32 and dark.dims == ("y", "x")
    np.testing.assert_array_equal(dark.read(), frames_folder.dark)
    assert dark.metadata["detector_header"]["ExposureTime"] == "1.5"
    assert dark.metadata["geometry"]["poni_file"] == "scan.poni"
    assert flat.dtype == np.uint16
    np.testing.assert_array_equal(flat.read(), frames_folder.flat)
    assert "notes" not in node  # not an image: skipped by Tiled's own walkers


def test_series_without_poni_is_served_without_geometry(registered, frames_folder):
    node, caught, _ = registered
    run = node["nogeometry"]["run"]
    assert run.shape == (2, 256, 256) and run.dtype == np.int32
    assert "geometry" not in run.metadata
    np.testing.assert_array_equal(run.read(), frames_folder.cbf)
    messages = [str(w.message) for w in caught if issubclass(w.category, NoGeometryWarning)]
    assert any("series 'run'" in m and "nogeometry" in m for m in messages)


def test_bad_series_are_skipped_with_a_reason_and_the_rest_registered(registered):
    node, _, records = registered
    log = "\n".join(r.getMessage() for r in records)
    assert list(node["mixed"]) == ["fine"]
    assert "SKIPPED series 'odd' (3 files)" in log and "mixes frame shapes" in log
    assert "junk" not in node["broken"]
    assert "SKIPPED series 'junk'" in log and "junk_0002.edf" in log


def test_http_without_our_package(frames_server, registered, frames_folder):
    """The curl examples of the README, with httpx."""
    headers = {"Authorization": f"Apikey {frames_server.api_key}"}
    base = frames_server.uri
    with httpx.Client(headers=headers, timeout=30, trust_env=False) as http:
        md = http.get(f"{base}/metadata/frames/scan").json()
        attrs = md["data"]["attributes"]
        assert attrs["metadata"]["geometry"]["poni_file"] == "scan.poni"
        assert attrs["structure"]["shape"] == [3, 256, 256]
        part = http.get(f"{base}/array/full/frames/scan",
                        params={"slice": "1,0:3,0:4", "format": "application/json"}).json()
        np.testing.assert_allclose(part, frames_folder.series[1, 0:3, 0:4])
        raw = http.get(f"{base}/array/block/frames/scan",
                       params={"block": "2,0,0", "format": "application/octet-stream"})
        frame = np.frombuffer(raw.content, dtype="<f4").reshape(256, 256)
        np.testing.assert_array_equal(frame, frames_folder.series[2])
        listing = http.get(f"{base}/search/frames", params={"fields": ""}).json()
        assert {"scan", "dark", "flat", "nogeometry"} <= {d["id"] for d in listing["data"]}


def test_a_file_changed_after_registration_fails_fast_and_clearly(registered, frames_folder):
    import tifffile
    from tiled.client.utils import ClientError

    node, _, _ = registered
    late = node["later"]["late"]
    np.testing.assert_array_equal(late[1], frames_folder.series[2])
    tifffile.imwrite(frames_folder.root / "later" / "late_2.tif", np.zeros((8, 8), np.float32))
    t0 = time.perf_counter()
    with pytest.raises(ClientError) as info:
        late[1]
    assert time.perf_counter() - t0 < 5  # HTTP 422 at once, not 500 retried for ~24 s
    assert info.value.response.status_code == 422
    assert "late_2.tif" in str(info.value) and "register the series again" in str(info.value)


def test_registering_again_replaces_what_was_there(frames_server, frames_folder, registered):
    import tiled_adapters

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGeometryWarning)
        for _ in range(2):
            node = tiled_adapters.register_frames(frames_server.client,
                                                  frames_folder.root / "nogeometry", "again")
    assert list(node) == ["run"] and node["run"].shape == (2, 256, 256)
    assert list(frames_server.client["again"]) == ["run"]


def test_files_fabio_reads_but_no_adapter_serves_are_named_in_a_warning(registered):
    node, _, records = registered
    assert list(node["princeton"]) == ["overview"]
    (warning,) = [r for r in records if "NOT REGISTERED" in r.getMessage()]
    message = warning.getMessage()
    assert warning.levelno == logging.WARNING
    assert "4 files in" in message and "princeton" in message
    assert "4 .spe (SpeImage: shot_001.spe, shot_002.spe, shot_003.spe, ... (1 more))" in message
    assert "fabio-convert -F edfimage" in message and "register the folder again" in message
    assert "log.xml" not in message and "overview" not in message


def test_a_folder_outside_the_servers_readable_storage_is_refused_up_front(
        frames_server, frames_folder, tmp_path, capsys):
    """The server accepts the registration of files it cannot read and answers every read
    with HTTP 500 (retried by clients for ~27 s): registration checks a read first."""
    import tifffile

    from tiled_adapters.__main__ import main

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    tifffile.imwrite(outside / "scan_0001.tif", frames_folder.series[0])
    tifffile.imwrite(outside / "scan_0002.tif", frames_folder.series[1])
    code = main(["register", frames_server.uri, str(outside), "--api-key",
                 frames_server.api_key])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot read the files in {str(outside)!r}" in err and "HTTP 500" in err
    assert "XRD_FRAMES_DIR" in err and "nothing was registered" in err
    keys = list(frames_server.client)
    assert "elsewhere" not in keys
    assert not [k for k in keys if k.startswith("xrd_mask_read_check_")]


def test_a_folder_inside_the_readable_storage_registers_from_the_command_line(
        frames_server, frames_folder, capsys):
    from tiled_adapters.__main__ import main

    with pytest.warns(NoGeometryWarning):
        code = main(["register", frames_server.uri, str(frames_folder.root / "nogeometry"),
                     "--prefix", "cli", "--api-key", frames_server.api_key])
    assert code == 0, capsys.readouterr().err
    assert "cli/run: (2, 256, 256)" in capsys.readouterr().out
    assert not [k for k in frames_server.client if k.startswith("xrd_mask_read_check_")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder whatever its mode")
def test_a_folder_this_user_cannot_read_is_an_error(tmp_path, capsys):
    from tiled_adapters.__main__ import main

    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    try:
        code = main(["serve", str(locked)])
    finally:
        locked.chmod(0o755)
    assert code == 2 and "cannot read the folder" in capsys.readouterr().err
