"""The Dioptas mask plugin, found and run by Dioptas' own plugin discovery and model (no display:
``QT_QPA_PLATFORM=offscreen``), on the real Pilatus frames of ``../shared/data/real``."""

from __future__ import annotations

from pathlib import Path

import fabio
import numpy as np
import pytest
from scipy import ndimage

from tests.extras import require_extra
from tests.real_data import require_real_data
from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.io import poni_from_xy_header

NAME = "U-Net spot mask (xrd-bluesky-mask)"
MAP = "Fe3O4C_M1_map_1_P1_E1_001"  # many real elongated spots and streaks, module gaps


@pytest.fixture(scope="module")
def dioptas():
    """A Dioptas model (what the GUI drives) with every mask plugin registered."""
    require_extra("dioptas", "dioptas")
    from dioptas.model.DioptasModel import DioptasModel

    return DioptasModel()


@pytest.fixture(scope="module")
def map_poni(tmp_path_factory) -> Path:
    """The PONI of the map frames (from their .xy header; it applies to the flipped image)."""
    real = require_real_data()
    text, _ = poni_from_xy_header(real / f"{MAP}.xy")
    path = tmp_path_factory.mktemp("poni") / f"{MAP}.poni"
    path.write_text(text)
    return path


def _show(dioptas, image: Path, poni: Path) -> np.ndarray:
    """Load a calibration and an image in Dioptas, as a user does; the image Dioptas shows."""
    dioptas.calibration_model.load(str(poni))
    dioptas.img_model.load(str(image))
    return dioptas.img_model.img_data


def _contrast(frame: np.ndarray, spots: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Each masked spot's peak over the median of the valid pixels 4-8 px around it."""
    labels, n = ndimage.label(spots)
    out = []
    for i in range(1, n + 1):
        spot = labels == i
        around = (ndimage.binary_dilation(spot, iterations=8)
                  & ~ndimage.binary_dilation(spot, iterations=3) & ~invalid & ~spots)
        out.append(frame[spot].max() / max(float(np.median(frame[around])), 1.0))
    return np.array(out)


def test_dioptas_finds_the_plugin(dioptas):
    from dioptas.model.util.plugin_discovery import discover_mask_plugins

    from xrd_bluesky_mask.plugins.dioptas import UNetSpotMaskPlugin

    assert UNetSpotMaskPlugin in discover_mask_plugins()  # the entry point of pyproject.toml
    manager = dioptas.mask_plugin_manager
    assert NAME in manager.plugin_names
    plugin = manager.get_plugin(NAME)
    assert plugin.is_dynamic and plugin.needs_geometry and plugin.has_settings
    assert set(plugin.get_settings_schema()) == set(plugin.get_settings()) == {
        "model", "threshold", "mask_static"}


def test_nothing_is_masked_without_a_calibration(dioptas):
    from xrd_bluesky_mask.plugins.dioptas import UNetSpotMaskPlugin

    plugin = UNetSpotMaskPlugin()
    frame = np.ones((40, 30), np.int32)
    mask = plugin.compute_mask(frame, None, None)
    assert mask.shape == frame.shape and mask.dtype == bool and not mask.any()


@pytest.mark.timeout(300)  # the first U-Net load and its numba compilation: ~30 s on 2 busy cores
def test_masks_the_spots_of_a_real_frame_not_the_gaps(dioptas, map_poni):
    real = require_real_data()
    manager = dioptas.mask_plugin_manager
    image = _show(dioptas, real / f"{MAP}.tif", map_poni)
    raw = fabio.open(str(real / f"{MAP}.tif")).data
    assert np.array_equal(image, np.flipud(raw))  # Dioptas flips what it loads

    manager.set_enabled(NAME, True)  # ticking it in the Mask tab
    entry = manager.plugins[NAME]
    assert entry.enabled, "Dioptas disabled the plugin: it raised (see the log)"
    mask = entry.cached_mask
    assert mask is not None and mask.shape == image.shape and mask.dtype == bool
    # the U-Net of this package on the same frame with the same PONI, outside Dioptas
    assert np.array_equal(mask, predict_mask(np.flipud(raw), map_poni))
    assert np.array_equal(dioptas.mask_model.get_mask(), mask)  # what Dioptas integrates with

    plugin = manager.get_plugin(NAME)
    result = plugin.result(image, manager._geometry)
    spots, gaps = result.spots, image < 0
    assert gaps.mean() > 0.05 and mask[gaps].all()  # gaps excluded, but not as spots
    assert not (spots & gaps).any()
    edge = ndimage.binary_dilation(gaps, iterations=2) & ~gaps
    assert spots[edge].mean() <= 2 * spots[~edge & ~gaps].mean()  # gap edges are no spots
    contrast = _contrast(image.astype(np.float64), spots, result.static)
    assert len(contrast) >= 20  # measured: 36 spots and streaks
    assert np.median(contrast) >= 1.5 and (contrast >= 4).sum() >= 5  # measured 2.0 and 7

    manager.update_plugin_settings(NAME, {"mask_static": False})
    assert np.array_equal(entry.cached_mask, spots) and not entry.cached_mask[gaps].any()
    manager.update_plugin_settings(NAME, {"threshold": 0.9})
    stricter = entry.cached_mask
    assert 0 < stricter.sum() < spots.sum() and not (stricter & ~spots).any()
    assert plugin.result(image, manager._geometry) is result  # re-cut, not computed again
    manager.update_plugin_settings(NAME, {"threshold": 0.0, "mask_static": True})
    manager.set_enabled(NAME, False)


def test_masks_the_calibrant_frame_with_its_poni_file(dioptas):
    real = require_real_data()
    manager = dioptas.mask_plugin_manager
    image = _show(dioptas, real / "CeO2_Pilatus1M.tif", real / "CeO2_Pilatus1M.poni")
    manager.set_enabled(NAME, True)
    mask = manager.plugins[NAME].cached_mask
    assert manager.plugins[NAME].enabled and mask is not None and mask.shape == (1043, 981)
    raw = fabio.open(str(real / "CeO2_Pilatus1M.tif")).data
    assert np.array_equal(mask, predict_mask(np.flipud(raw), real / "CeO2_Pilatus1M.poni"))
    assert mask[image < 0].all() and 0 < (mask & (image >= 0)).mean() < 0.01
    manager.set_enabled(NAME, False)


def test_geometry_follows_the_detector_orientation(dioptas):
    """Dioptas hands over the PONI numbers without the detector's orientation (which it may
    change, its images being flipped): the plugin's geometry must reproduce its pixel 2θ."""
    from dataclasses import replace

    from dioptas.model.util.MaskPlugin import GeometryContext
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from xrd_bluesky_mask.plugins.dioptas import geometry_from_dioptas

    shape = (1043, 981)
    context = None
    for orientation in (3, 2):  # pyFAI's default; top right, Dioptas' own convention
        det = Detector(pixel1=172e-6, pixel2=172e-6, max_shape=shape, orientation=orientation)
        ai = AzimuthalIntegrator(dist=0.2087, poni1=0.0873, poni2=0.0800, rot1=-0.0184,
                                 rot2=0.0041, rot3=0.0, detector=det, wavelength=4.066e-11)
        context = GeometryContext(
            tth_array=ai.center_array(shape, unit="2th_rad"),
            azi_array=ai.center_array(shape, unit="chi_rad"), dist=ai.dist,
            wavelength=ai.wavelength, poni1=ai.poni1, poni2=ai.poni2, rot1=ai.rot1,
            rot2=ai.rot2, rot3=ai.rot3, pixel1=det.pixel1, pixel2=det.pixel2)
        geometry = geometry_from_dioptas(context, shape)
        np.testing.assert_allclose(np.radians(geometry.tth_deg().astype(np.float64)),
                                   context.tth_array, rtol=0, atol=1e-6)
        assert f'"orientation": {orientation}' in geometry.poni_text
    assert context is not None
    with pytest.raises(ValueError, match="spline"):
        geometry_from_dioptas(replace(context, tth_array=context.tth_array * 1.01), shape)
