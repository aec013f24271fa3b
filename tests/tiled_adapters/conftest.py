"""A folder of detector images written by the simulator, and a real Tiled server serving it
with ``tiled serve config tiled_adapters/serve_frames.yml`` (a child process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHAPE = (256, 256)
N_FRAMES = 3


@dataclass
class FramesFolder:
    """What the folder holds, for the tests to compare against."""

    root: Path
    series: np.ndarray          # scan_0001..0003.tif, float32 (N, 256, 256)
    poni: str                   # scan.poni
    dark: np.ndarray            # dark.edf, float32, header ExposureTime = 1.5
    flat: np.ndarray            # flat.tif, uint16
    cbf: np.ndarray             # nogeometry/run_001..002.cbf, int32, no PONI beside


def write_spe(path: Path, image: np.ndarray) -> None:
    """A Princeton Instruments SPE (v2) file of one uint16 frame, as fabio reads it (fabio
    cannot write SPE): a 4100-byte header (x size at byte 42, y size at 656, data type 3 =
    uint16 at 108, frame count at 1446, date and time at 20 and 172), then the pixels."""
    header = bytearray(4100)
    ny, nx = image.shape
    for offset, value in ((0, np.int16(1)), (6, np.int16(nx)), (10, np.float32(1.0)),
                          (42, np.int16(nx)), (108, np.uint16(3)), (656, np.int16(ny)),
                          (1446, np.int32(1))):
        header[offset:offset + value.nbytes] = value.tobytes()
    header[20:29], header[172:178] = b"01Jan2024", b"120000"
    path.write_bytes(bytes(header) + image.astype("<u2").tobytes())


def _write_folder(root: Path) -> FramesFolder:
    import tifffile
    from fabio.cbfimage import CbfImage
    from fabio.edfimage import EdfImage

    from xrd_bluesky_mask.simulate import simulate_frame

    frames = [simulate_frame("rings_spots", seed=k, shape=SHAPE) for k in range(N_FRAMES)]
    series = np.stack([f.image.astype(np.float32) for f in frames])
    root.mkdir(parents=True)
    for k, image in enumerate(series):
        tifffile.imwrite(root / f"scan_{k + 1:04d}.tif", image)
    poni = frames[0].geometry.poni_text
    (root / "scan.poni").write_text(poni)
    dark = (series[0] * 0.01).astype(np.float32)
    EdfImage(data=dark, header={"ExposureTime": "1.5", "Detector": "sim"}).write(
        str(root / "dark.edf"))
    flat = np.clip(series[1], 0, 65535).astype(np.uint16)
    tifffile.imwrite(root / "flat.tif", flat)
    (root / "notes.txt").write_text("not an image: left to Tiled's own walkers\n")

    nogeo = root / "nogeometry"
    nogeo.mkdir()
    cbf = np.clip(series[:2], 0, None).astype(np.int32)
    for k, image in enumerate(cbf):
        CbfImage(data=image).write(str(nogeo / f"run_{k + 1:03d}.cbf"))

    mixed = root / "mixed"
    mixed.mkdir()
    tifffile.imwrite(mixed / "odd_0001.tif", series[0])
    tifffile.imwrite(mixed / "odd_0002.tif", series[1][:128, :128])
    tifffile.imwrite(mixed / "odd_0003.tif", series[2])
    tifffile.imwrite(mixed / "fine.tif", series[2])  # unnumbered: an image of its own

    later = root / "later"  # a test changes a file here after registration
    later.mkdir()
    for k in (1, 2):
        tifffile.imwrite(later / f"late_{k}.tif", series[k])
    (later / "late.poni").write_text(poni)

    broken = root / "broken"
    broken.mkdir()
    EdfImage(data=dark).write(str(broken / "junk_0001.edf"))
    (broken / "junk_0002.edf").write_bytes(b"this is not an EDF file" * 20)

    princeton = root / "princeton"  # a type fabio reads but no adapter serves, beside a TIFF
    princeton.mkdir()
    for k in range(4):
        write_spe(princeton / f"shot_{k + 1:03d}.spe", np.clip(series[k % N_FRAMES], 0, 65535))
    tifffile.imwrite(princeton / "overview.tif", series[0])
    (princeton / "log.xml").write_text("<log>not an image, though fabio knows .xml</log>\n")
    return FramesFolder(root, series, poni, dark, flat, cbf)


@pytest.fixture(scope="session")
def frames_folder(tmp_path_factory) -> FramesFolder:
    """``frames/``: a TIFF series with its PONI, single EDF and TIFF images, a CBF series
    without PONI (``nogeometry/``), a series of mixed shapes (``mixed/``), one with an
    unreadable file (``broken/``), one a test damages (``later/``) and Princeton ``.spe``
    frames that no adapter serves beside a TIFF (``princeton/``)."""
    return _write_folder(tmp_path_factory.mktemp("legacy") / "frames")


@dataclass
class FramesServer:
    uri: str
    api_key: str
    client: Any
    log: Path


@pytest.fixture(scope="session")
def frames_server(frames_folder: FramesFolder, tmp_path_factory):
    """``tiled serve config tiled_adapters/serve_frames.yml`` on the folder, with the folder
    registered by `register_frames` (under ``frames``)."""
    import tiled_adapters
    from xrd_bluesky_mask.testing import serve_tiled

    catalog = tmp_path_factory.mktemp("frames_catalog")
    env = {"XRD_FRAMES_DIR": str(frames_folder.root), "XRD_FRAMES_CATALOG": str(catalog)}
    with serve_tiled(catalog, config=tiled_adapters.CONFIG, env=env) as server:
        yield FramesServer(server.uri, server.api_key, server.client(), catalog / "server.log")


@pytest.fixture(scope="session")
def registered(frames_server: FramesServer, frames_folder: FramesFolder):
    """The folder registered on the server; returns ``(container, captured warnings, logs)``."""
    import logging
    import warnings

    import tiled_adapters

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("tiled_adapters")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            node = tiled_adapters.register_frames(frames_server.client, frames_folder.root)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return node, list(caught), records
