"""Mask files for other tools, loaded back with those tools' own readers: pyFAI (its worker's
mask file, the detector's ``maskfile``), fabio, numpy, and Dioptas' image and mask models."""

from __future__ import annotations

from pathlib import Path

import fabio
import numpy as np
import pytest

from tests.extras import require_extra
from tests.real_data import require_real_data
from xrd_bluesky_mask.errors import ConfigError, FrameError
from xrd_bluesky_mask.geometry import integrator_from_poni_text
from xrd_bluesky_mask.io import MASK_FORMATS, export_mask, write_dioptas_mask, write_pyfai_mask


@pytest.fixture
def codes(rng: np.random.Generator) -> np.ndarray:
    """uint8 mask codes (0 keep, 1 spot, 2 static) of a 256 x 256 frame, not symmetric."""
    c = np.zeros((256, 256), np.uint8)
    c[rng.random(c.shape) < 0.05] = 1
    c[:, 120:123] = 2
    c[:10, :] = 2
    return c


@pytest.mark.parametrize("suffix", [".edf", ".npy"])
def test_pyfai_mask_is_what_pyfai_integrates_with(tmp_path: Path, codes, small_geometry, rng,
                                                  suffix: str) -> None:
    from pyFAI.worker import Worker

    path = write_pyfai_mask(tmp_path / f"scan_mask{suffix}", codes)
    exclude = codes != 0
    got = np.load(path) if suffix == ".npy" else fabio.open(str(path)).data
    assert got.dtype == np.uint8 and np.array_equal(got, exclude)
    if suffix == ".edf":
        assert np.array_equal(fabio.open(str(path)).data, exclude)

    frame = rng.poisson(200.0, codes.shape).astype(np.float32)
    frame[codes != 0] = 1e6  # what the mask must keep out of the pattern
    ai = small_geometry.integrator
    expected = ai.integrate1d(frame, 300, unit="2th_deg", mask=exclude)
    fresh = integrator_from_poni_text(small_geometry.poni_text)  # not the cached geometry's
    fresh.detector.max_shape = codes.shape
    worker = Worker(azimuthalIntegrator=fresh, unit="2th_deg")
    worker.set_mask_file(str(path))  # what pyFAI-integrate --mask does
    loaded = worker.ai.integrate1d(frame, 300, unit="2th_deg")
    assert np.array_equal(np.asarray(worker.ai.detector.mask, bool), exclude)
    np.testing.assert_allclose(loaded.intensity, expected.intensity, rtol=1e-6)
    assert np.nanmax(loaded.intensity) < 1e3  # the 1e6 pixels were left out


def test_dioptas_mask_lines_up_with_the_image_in_dioptas(tmp_path: Path) -> None:
    real = require_real_data()
    require_extra("dioptas", "dioptas")
    from dioptas.model.ImgModel import ImgModel
    from dioptas.model.MaskModel import MaskModel

    raw = fabio.open(str(real / "CeO2_Pilatus1M.tif")).data
    gaps = raw < 0  # module gaps and bad pixels, in the file's orientation
    out = export_mask(tmp_path / "CeO2_Pilatus1M", gaps, ["dioptas", "edf", "npy"])
    assert [p.name for p in out] == ["CeO2_Pilatus1M.mask", "CeO2_Pilatus1M_mask.edf",
                                     "CeO2_Pilatus1M_mask.npy"]
    img = ImgModel()
    img.load(str(real / "CeO2_Pilatus1M.tif"))
    shown_gaps = img.img_data < 0  # Dioptas shows the image flipped up-down
    assert not np.array_equal(shown_gaps, gaps)

    masks = MaskModel()
    masks.set_dimension(img.img_data.shape)
    assert masks.load_mask(str(out[0]))  # Dioptas' "Load mask" of a .mask file
    assert np.array_equal(masks.get_mask() != 0, shown_gaps)
    # the pyFAI files are in the file's orientation: Dioptas loads them as "vertically flipped"
    for path in out[1:]:
        assert np.array_equal(MaskModel.read_mask_file(str(path), flipud=True) != 0, shown_gaps)


def test_bad_masks_and_formats(tmp_path: Path, codes) -> None:
    from xrd_bluesky_mask.commands._options import EXPORT_FORMATS

    assert tuple(MASK_FORMATS) == EXPORT_FORMATS == ("edf", "npy", "dioptas")
    with pytest.raises(FrameError):
        write_dioptas_mask(tmp_path / "x.mask", np.zeros((2, 3, 4)))
    with pytest.raises(ConfigError, match="tif"):
        write_pyfai_mask(tmp_path / "x.tif", codes)
    with pytest.raises(ConfigError, match="unknown mask export format 'png'"):
        export_mask(tmp_path / "x", codes, ["edf", "png"])
    assert not list(tmp_path.iterdir())  # nothing written when a format is unknown
