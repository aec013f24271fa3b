"""Tests of xrd_bluesky_mask.azimuthal: masked azimuthal integration to 1D patterns."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from tests.real_data import REAL, require_real_data
from xrd_bluesky_mask.azimuthal import IntegrationSettings, Integrator, integrate
from xrd_bluesky_mask.azimuthal import integrate1d as integration
from xrd_bluesky_mask.errors import FrameError, GeometryError
from xrd_bluesky_mask.geometry import Geometry, as_geometry, integrator_from_poni_text

MAP_FRAMES = ["Fe3O4C_M1_map_1_P1_E1_001", "Fe3O4C_M1_map_2_P1_E1_001"]

SHAPE = (192, 160)
RING_TTH_DEG = (3.0, 5.0, 7.5)


def fresh_geometry(
    shape: tuple[int, int] = SHAPE, *, wavelength_m: float | None = 0.5e-10
) -> Geometry:
    """A geometry no other test shares (a unique comment keeps it out of the cache)."""
    lines = [
        f"# test geometry {uuid.uuid4().hex}",
        "PixelSize1: 0.000150",
        "PixelSize2: 0.000150",
        "Distance: 0.1",
        f"Poni1: {shape[0] * 0.4 * 150e-6}",
        f"Poni2: {shape[1] * 0.45 * 150e-6}",
        "Rot1: 0.01",
        "Rot2: -0.005",
        "Rot3: 0.0",
    ]
    if wavelength_m is not None:
        lines.append(f"Wavelength: {wavelength_m}")
    return as_geometry("\n".join(lines) + "\n", shape)


@pytest.fixture(scope="module")
def geo() -> Geometry:
    return fresh_geometry()


def ring_frame(geo: Geometry, rng: np.random.Generator, background: float = 50.0) -> np.ndarray:
    """Poisson-noisy powder rings (Gaussian in 2θ, σ = 0.08°) on a flat background, counts."""
    tth = geo.tth_deg().astype(np.float64)
    lam = np.full(tth.shape, background)
    for i, centre in enumerate(RING_TTH_DEG):
        lam += (400.0 / (i + 1)) * np.exp(-0.5 * ((tth - centre) / 0.08) ** 2)
    return rng.poisson(lam).astype(np.float32)


def blob(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


# ------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    s = IntegrationSettings()
    assert s.npt == 2000 and s.unit == "2th_deg" and s.method == ("bbox", "csr", "cython")
    assert s.correct_solid_angle and s.error_model == "poisson" and s.radial_range is None
    with pytest.raises(ValidationError):
        IntegrationSettings(npt=8)
    with pytest.raises(ValidationError):
        IntegrationSettings(unit="r_mm")
    with pytest.raises(ValidationError):
        IntegrationSettings(nbins=100)  # extra fields are forbidden
    with pytest.raises(ValidationError):
        IntegrationSettings(method=("bbox", "csr", "gpu"))
    with pytest.raises(ValidationError):
        IntegrationSettings(radial_range=(5.0, 1.0))
    with pytest.raises(ValidationError):
        IntegrationSettings(polarization_factor=2.0)
    assert IntegrationSettings(method="no,histogram,cython").method == (
        "no", "histogram", "cython"
    )


# ------------------------------------------------------------------------------------------
# output layout
# ------------------------------------------------------------------------------------------


def test_the_readme_plot_is_against_two_theta(geo: Geometry, rng: np.random.Generator) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    da = Integrator(geo, IntegrationSettings(npt=64)).integrate(ring_frame(geo, rng))
    (line,) = da.plot.line(x="two_theta")
    np.testing.assert_allclose(line.get_xdata(), da.two_theta.values)
    assert "2θ" in line.axes.get_xlabel()
    plt.close("all")


def test_dataarray_layout(geo: Geometry, rng: np.random.Generator) -> None:
    frame = ring_frame(geo, rng)
    settings = IntegrationSettings(npt=128, polarization_factor=0.99)
    da = Integrator(geo, settings).integrate(frame)
    assert isinstance(da, xr.DataArray)
    assert da.name == "intensity" and da.dims == ("radial",) and da.shape == (128,)
    assert {"two_theta", "q", "sigma"} <= set(da.coords)
    assert da.two_theta.attrs["units"] == "deg" and da.two_theta.attrs["pyfai_unit"] == "2th_deg"
    assert da.q.attrs["units"] == "1/Å" and da.q.attrs["pyfai_unit"] == "q_A^-1"
    for key in ("radial_unit", "method", "npt", "polarization_factor", "correct_solid_angle",
                "masked_pixels", "masked_fraction", "poni", "package"):
        assert key in da.attrs, key
    assert da.attrs["package"] == "xrd_bluesky_mask"
    assert da.attrs["npt"] == 128 and da.attrs["radial_unit"] == "2th_deg"
    assert da.attrs["polarization_factor"] == 0.99
    assert da.attrs["masked_pixels"] == 0 and da.attrs["masked_fraction"] == 0.0
    assert da.attrs["poni"] == geo.poni_text
    assert np.all(np.isfinite(da.values)) and np.all(da.sigma.values > 0)
    # Poisson error of a ~50-count background averaged over many pixels is well below 50
    assert np.nanmedian(da.sigma.values) < 5.0
    # the strongest ring lands in the right bin
    assert abs(float(da.two_theta[np.argmax(da.values)]) - RING_TTH_DEG[0]) < 0.1


def test_error_model_none_gives_nan_sigma(geo: Geometry, rng: np.random.Generator) -> None:
    da = Integrator(geo, IntegrationSettings(npt=64, error_model=None)).integrate(
        ring_frame(geo, rng)
    )
    assert np.all(np.isnan(da.sigma.values)) and np.all(np.isfinite(da.values))


def test_azimuthal_error_model(geo: Geometry, rng: np.random.Generator) -> None:
    da = Integrator(geo, IntegrationSettings(npt=64, error_model="azimuthal")).integrate(
        ring_frame(geo, rng)
    )
    assert np.all(np.isfinite(da.sigma.values)) and np.all(da.sigma.values >= 0)


# ------------------------------------------------------------------------------------------
# masking
# ------------------------------------------------------------------------------------------


def test_dummy_path_equals_mask_path(geo: Geometry, rng: np.random.Generator) -> None:
    frame = ring_frame(geo, rng)
    frame[:5, :7] = -1  # negative "gap" pixels, kept (they are not the dummy)
    mask = rng.random(frame.shape) < 0.05
    mask |= blob(frame.shape, (60, 90), 12)
    settings = IntegrationSettings(npt=150, polarization_factor=0.95)
    ours = Integrator(geo, settings).integrate(frame, mask)
    # pyFAI's own mask= path, on a separate integrator so geo's engine is left alone
    ref_ai = integrator_from_poni_text(geo.poni_text)
    ref = ref_ai.integrate1d(
        frame, 150, unit="2th_deg", method=("bbox", "csr", "cython"), mask=mask,
        polarization_factor=0.95, correctSolidAngle=True, error_model="poisson",
    )
    np.testing.assert_allclose(ours.two_theta.values, ref.radial, rtol=1e-12)
    np.testing.assert_allclose(ours.values, ref.intensity, rtol=1e-6)
    np.testing.assert_allclose(ours.sigma.values, ref.sigma, rtol=1e-6)
    assert ours.attrs["masked_pixels"] == int(mask.sum())
    assert ours.attrs["masked_fraction"] == pytest.approx(mask.mean())


def test_mask_removes_bright_blob(geo: Geometry, rng: np.random.Generator) -> None:
    clean = ring_frame(geo, rng)
    spot = blob(clean.shape, (100, 40), 6)
    with_spot = clean.copy()
    with_spot[spot] += 20000.0  # a bright single-crystal spot
    mask = blob(clean.shape, (100, 40), 8)  # the mask covers the spot with a margin
    integ = Integrator(geo, IntegrationSettings(npt=120))

    p_clean = integ.integrate(clean)
    p_masked = integ.integrate(with_spot, mask)
    p_unmasked = integ.integrate(with_spot)
    p_clean_masked = integ.integrate(clean, mask)

    # masked pixels do not matter at all: identical to the clean frame with the same mask
    np.testing.assert_allclose(p_masked.values, p_clean_masked.values, rtol=1e-6)
    # and equal to the clean, unmasked pattern within the noise
    diff = np.abs(p_masked.values - p_clean.values)
    noise = np.hypot(p_masked.sigma.values, p_clean.sigma.values)
    assert np.nanmax(diff / noise) < 5.0
    # without the mask the spot shows up strongly
    excess = (p_unmasked.values - p_clean.values) / noise
    assert np.nanmax(excess) > 50.0


def test_nan_and_inf_pixels_are_masked(geo: Geometry, rng: np.random.Generator) -> None:
    frame = ring_frame(geo, rng)
    bad = np.zeros(frame.shape, dtype=bool)
    bad[rng.integers(0, SHAPE[0], 200), rng.integers(0, SHAPE[1], 200)] = True
    dirty = frame.copy()
    dirty[bad] = np.nan
    dirty[10, 10], dirty[20, 30] = np.inf, -np.inf
    bad[10, 10] = bad[20, 30] = True
    integ = Integrator(geo, IntegrationSettings(npt=100))
    got = integ.integrate(dirty)
    want = integ.integrate(frame, bad)
    assert np.all(np.isfinite(got.values))
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6)
    assert got.attrs["masked_pixels"] == int(bad.sum())
    assert np.all(np.isfinite(dirty[~bad]))  # the caller's frame is not modified
    assert np.isnan(dirty[bad & ~np.isinf(dirty)]).all()


def test_empty_bins_are_nan(geo: Geometry, rng: np.random.Generator) -> None:
    frame = ring_frame(geo, rng)
    tth = geo.tth_deg()
    mask = (tth > 4.0) & (tth < 6.0)  # a fully masked annulus
    da = Integrator(geo, IntegrationSettings(npt=100)).integrate(frame, mask)
    inside = (da.two_theta.values > 4.2) & (da.two_theta.values < 5.8)
    assert inside.any() and np.all(np.isnan(da.values[inside]))
    assert np.all(np.isnan(da.sigma.values[inside]))
    assert np.all(np.isfinite(da.values[~inside & (da.two_theta.values < 3.8)]))


# ------------------------------------------------------------------------------------------
# units and geometry
# ------------------------------------------------------------------------------------------


def test_q_and_two_theta_consistent(geo: Geometry, rng: np.random.Generator) -> None:
    frame = ring_frame(geo, rng)
    lam_a = geo.wavelength_m * 1e10
    p_tth = Integrator(geo, IntegrationSettings(npt=200)).integrate(frame)
    p_q = Integrator(geo, IntegrationSettings(npt=200, unit="q_A^-1")).integrate(frame)
    assert p_q.attrs["radial_unit"] == "q_A^-1"
    for p in (p_tth, p_q):
        q_expected = 4 * np.pi * np.sin(np.radians(p.two_theta.values) / 2) / lam_a
        np.testing.assert_allclose(p.q.values, q_expected, rtol=1e-9)
    # q bins are evenly spaced when binning in q, 2θ bins when binning in 2θ
    assert np.allclose(np.diff(p_q.q.values), np.diff(p_q.q.values)[0])
    assert np.allclose(np.diff(p_tth.two_theta.values), np.diff(p_tth.two_theta.values)[0])
    # the same ring is found at the same 2θ in both
    peak_tth = float(p_tth.two_theta[np.argmax(p_tth.values)])
    peak_q = float(p_q.two_theta[np.argmax(p_q.values)])
    assert abs(peak_tth - RING_TTH_DEG[0]) < 0.1 and abs(peak_q - RING_TTH_DEG[0]) < 0.1


def test_radial_range_in_unit(geo: Geometry, rng: np.random.Generator) -> None:
    s = IntegrationSettings(npt=50, radial_range=(2.0, 6.0))
    da = Integrator(geo, s).integrate(ring_frame(geo, rng))
    assert da.two_theta.values[0] == pytest.approx(2.04) and da.two_theta.values[-1] == (
        pytest.approx(5.96)
    )


def test_no_wavelength_two_theta_only() -> None:
    g = fresh_geometry((64, 48), wavelength_m=None)
    frame = np.ones((64, 48), dtype=np.float32)
    da = Integrator(g, IntegrationSettings(npt=32)).integrate(frame)
    assert "two_theta" in da.coords and "q" not in da.coords
    with pytest.raises(GeometryError, match="wavelength"):
        Integrator(g, IntegrationSettings(npt=32, unit="q_A^-1"))


def test_shape_mismatch_and_bad_input(geo: Geometry) -> None:
    integ = Integrator(geo, IntegrationSettings(npt=32))
    with pytest.raises(GeometryError, match="does not match"):
        integ.integrate(np.zeros((SHAPE[1], SHAPE[0]), dtype=np.float32))
    with pytest.raises(GeometryError):
        integrate(np.zeros((10, 10)), geo)
    with pytest.raises(FrameError, match="mask shape"):
        integ.integrate(np.zeros(SHAPE), mask=np.zeros((3, 3), dtype=bool))
    with pytest.raises(FrameError, match="2D"):
        integ.integrate(np.zeros((2, *SHAPE)))


def test_int_frames_are_accepted(geo: Geometry, rng: np.random.Generator) -> None:
    frame = ring_frame(geo, rng)
    integ = Integrator(geo, IntegrationSettings(npt=64))
    a = integ.integrate(frame.astype(np.int32))
    b = integ.integrate(frame)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)


# ------------------------------------------------------------------------------------------
# engine reuse and the module-level cache
# ------------------------------------------------------------------------------------------


def test_engine_built_once_for_changing_masks(
    rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    g = fresh_geometry()
    frame = ring_frame(g, rng)
    integ = Integrator(g, IntegrationSettings(npt=100))
    with caplog.at_level(logging.INFO):
        for _ in range(4):
            integ.integrate(frame, rng.random(SHAPE) < 0.1)
    ours = [r for r in caplog.records if r.name == "xrd_bluesky_mask.azimuthal"]
    assert len(ours) == 1 and "built pyFAI engine" in ours[0].getMessage()
    assert ours[0].levelno == logging.INFO
    resets = [r for r in caplog.records if "Resetting" in r.getMessage()]
    assert len(resets) <= 1  # pyFAI's "first initialization" only, never "mask changed"
    assert not any("mask changed" in r.getMessage() for r in resets)


def test_rebuild_warning_when_settings_alternate(
    rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    g = fresh_geometry()
    frame = ring_frame(g, rng)
    a = Integrator(g, IntegrationSettings(npt=100))
    b = Integrator(g, IntegrationSettings(npt=120))
    with caplog.at_level(logging.INFO, logger="xrd_bluesky_mask.azimuthal"):
        for _ in range(3):
            a.integrate(frame)
            b.integrate(frame)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "rebuilt" in warnings[0].getMessage()  # once per Integrator


def test_module_integrate_caches_integrators(rng: np.random.Generator) -> None:
    g = fresh_geometry()
    frame = ring_frame(g, rng)
    s = IntegrationSettings(npt=80)
    a = integrate(frame, g, settings=s)
    n = len(integration._CACHE)
    b = integrate(frame, g, mask=rng.random(SHAPE) < 0.01, settings=IntegrationSettings(npt=80))
    assert len(integration._CACHE) == n  # equal settings -> the same cached Integrator
    assert a.shape == b.shape == (80,)
    integrate(frame, g, settings=IntegrationSettings(npt=81))
    assert len(integration._CACHE) == min(n + 1, integration._CACHE_SIZE)
    # PONI text works too (made a Geometry of the frame's shape)
    c = integrate(frame, g.poni_text, settings=s)
    np.testing.assert_allclose(c.values, a.values)


# ------------------------------------------------------------------------------------------
# parity with patterns pyFAI wrote for real Pilatus 1M frames
# ------------------------------------------------------------------------------------------


def _need_real() -> None:
    require_real_data()


def _bins_of(x: np.ndarray) -> tuple[int, tuple[float, float]]:
    """npt and radial range of a pattern with evenly spaced bin centres."""
    step = (x[-1] - x[0]) / (len(x) - 1)
    return len(x), (float(x[0] - step / 2), float(x[-1] + step / 2))


@pytest.mark.parametrize("name", MAP_FRAMES)
def test_parity_with_pyfai_xy(name: str) -> None:
    _need_real()
    from xrd_bluesky_mask.io import poni_from_xy_header, read_frame, read_xy

    xy = REAL / f"{name}.xy"
    x, y, _ = read_xy(xy)
    poni, pol = poni_from_xy_header(xy)
    assert pol == pytest.approx(0.99)
    frame = np.flipud(read_frame(REAL / f"{name}.tif"))  # the PONI applies to the flipped image
    assert (frame == -1).sum() > 10000  # module gaps, kept in the integration below
    npt, radial_range = _bins_of(x)
    settings = IntegrationSettings(
        npt=npt, unit="2th_deg", method=("bbox", "csr", "cython"), polarization_factor=pol,
        correct_solid_angle=True, radial_range=radial_range,
    )
    da = integrate(frame, as_geometry(poni, frame.shape), settings=settings)
    np.testing.assert_allclose(da.two_theta.values, x, atol=1e-5)
    strong = y > 0.01 * np.max(y)
    rel = np.abs(da.values[strong] - y[strong]) / np.abs(y[strong])
    assert np.max(rel) < 0.01, f"max rel diff {np.max(rel):.4f}"
    assert np.median(rel) < 0.002, f"median rel diff {np.median(rel):.5f}"
    # masking the -1 gap pixels changes the pattern: the .xy was made without a mask
    masked = integrate(frame, as_geometry(poni, frame.shape), mask=frame < 0, settings=settings)
    rel_m = np.abs(masked.values[strong] - y[strong]) / np.abs(y[strong])
    assert np.nanmedian(rel_m) > 0.01


def test_ceo2_peak_positions() -> None:
    _need_real()
    from pyFAI.calibrant import get_calibrant
    from scipy.signal import find_peaks

    from xrd_bluesky_mask.io import read_frame, read_xy

    geo = as_geometry(REAL / "CeO2_Pilatus1M.poni", (1043, 981))
    frame = np.flipud(read_frame(REAL / "CeO2_Pilatus1M.tif"))
    x, y, _ = read_xy(REAL / "CeO2_Pilatus1M.xy")
    npt, radial_range = _bins_of(x)
    step = (radial_range[1] - radial_range[0]) / npt
    da = integrate(frame, geo, settings=IntegrationSettings(npt=npt, radial_range=radial_range))
    ours = np.nan_to_num(da.values)

    def peaks(v: np.ndarray) -> np.ndarray:
        idx, props = find_peaks(v, prominence=0.05 * np.max(v))
        return idx[np.argsort(props["prominences"])[::-1][:8]]

    ref_peaks = np.sort(x[peaks(y)])
    our_peaks = np.sort(da.two_theta.values[peaks(ours)])
    assert len(ref_peaks) >= 5 and len(our_peaks) == len(ref_peaks)
    assert np.max(np.abs(our_peaks - ref_peaks)) <= step + 1e-9  # same bin (measured: same)
    calibrant = get_calibrant("CeO2")
    calibrant.wavelength = geo.wavelength_m
    lines = np.degrees(np.asarray(calibrant.get_2th()))
    near = np.min(np.abs(our_peaks[:, None] - lines[None, :]), axis=1)
    assert np.max(near) < 1.5 * step, f"peaks {our_peaks} vs CeO2 lines {lines[:12]}"
