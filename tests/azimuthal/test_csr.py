"""TorchIntegrator reproduces pyFAI's masked integration."""

import numpy as np
import pytest

from xrd_bluesky_mask.azimuthal import IntegrationSettings, Integrator
from xrd_bluesky_mask.azimuthal.csr import TorchIntegrator
from xrd_bluesky_mask.simulate import simulate_frame


@pytest.fixture(scope="module")
def sim():
    return simulate_frame("rings_spots", seed=3, shape=(384, 384))


@pytest.mark.parametrize("settings", [
    IntegrationSettings(npt=500),
    IntegrationSettings(npt=300, unit="q_A^-1", polarization_factor=0.99),
    IntegrationSettings(npt=400, correct_solid_angle=False, error_model=None),
])
def test_matches_pyfai_with_a_new_mask_each_frame(sim, settings):
    ref = Integrator(sim.geometry, settings)
    fast = TorchIntegrator(sim.geometry, settings)
    rng = np.random.default_rng(0)
    assert (sim.image < 0).any()  # read noise: negative pixels are integrated too
    for mask in (sim.labels == 1, rng.random(sim.image.shape) < 0.2, None):
        a = ref.integrate(sim.image, mask)
        b = fast.integrate(sim.image, mask)
        np.testing.assert_array_equal(np.isfinite(a.values), np.isfinite(b.values))
        scale = np.nanmax(np.abs(a.values))
        assert np.nanmax(np.abs(a.values - b.values)) < 1e-5 * scale
        np.testing.assert_allclose(a["two_theta"].values, b["two_theta"].values)
        if settings.error_model:
            assert np.nanmax(np.abs(a.sigma.values - b.sigma.values)) < 1e-5 * np.nanmax(
                a.sigma.values)
        assert b.attrs["masked_pixels"] >= (0 if mask is None else int(mask.sum()))
        assert b.attrs["masked_pixels"] == a.attrs["masked_pixels"]


def test_batch_equals_frame_by_frame(sim):
    fast = TorchIntegrator(sim.geometry)
    frames = np.stack([sim.image, sim.spot_free]).astype(np.float32)
    masks = np.stack([sim.labels == 1, np.zeros_like(sim.labels, bool)])
    batch = fast.integrate_batch(frames, masks)
    for i in range(2):
        one = fast.integrate(frames[i], masks[i])
        np.testing.assert_allclose(batch[i].values, one.values, rtol=1e-6)
    # the masked spotty frame is closer to the spot-free pattern than the unmasked one
    clean = batch[1].values
    unmasked = fast.integrate(frames[0], None).values
    ok = np.isfinite(clean)
    assert np.abs(batch[0].values - clean)[ok].sum() < np.abs(unmasked - clean)[ok].sum()


def test_refuses_a_non_csr_method(sim):
    with pytest.raises(ValueError, match="CSR"):
        TorchIntegrator(sim.geometry, IntegrationSettings(method=("no", "histogram", "cython")))
