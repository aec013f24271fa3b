"""One pipeline for every masker: batches through `predict_batch` equal the reference path."""

import numpy as np
import pytest

from xrd_bluesky_mask.errors import ConfigError, GeometryError
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.pipeline import ExecutionPolicy, Pipeline, process_frame
from xrd_bluesky_mask.pipeline.policy import resolve
from xrd_bluesky_mask.protocols import BatchMasker, Masker
from xrd_bluesky_mask.simulate import simulate_frame


@pytest.fixture(scope="module")
def sims():
    return [simulate_frame(p, seed=i, shape=(512, 512))
            for i, p in enumerate(("rings_spots", "spots_po", "spots_texture"))]


@pytest.fixture(scope="module")
def unet():
    return UNetMasker()


@pytest.mark.parametrize(("tile", "on_device"), [(None, True), (192, False), ("auto", "auto")])
def test_batched_unet_agrees_with_reference(sims, unet, tile, on_device):
    geometry = sims[0].geometry
    pipeline = Pipeline(unet, geometry, policy=ExecutionPolicy(
        batch=3, tile=tile, integrate_on_device=on_device))
    out = pipeline.process([s.image for s in sims])
    assert len(out) == len(sims)
    for s, r in zip(sims, out, strict=True):
        ref = process_frame(s.image, s.geometry, unet)
        assert r.mask.probability is None and ref.mask.probability is not None
        assert np.mean(r.mask.spots == ref.mask.spots) >= 0.9999
        np.testing.assert_array_equal(r.mask.static, ref.mask.static)
        a, b = ref.pattern.values, r.pattern.values
        assert np.nanmax(np.abs(a - b)) < 1e-4 * np.nanmax(a)
        assert set(r.timings) >= {"normalise", "network", "mask", "integrate", "total"}
    assert any(r.mask.spots.any() for r in out)


def test_any_masker_runs_through_the_same_pipeline(sims):
    classical = RingOutlierMasker()
    assert isinstance(classical, Masker) and not isinstance(classical, BatchMasker)
    pipeline = Pipeline(classical, sims[0].geometry, policy=ExecutionPolicy(batch=2))
    out = pipeline.process([s.image for s in sims[:2]])
    for s, r in zip(sims[:2], out, strict=True):
        ref = classical.predict(s.image, s.geometry)
        np.testing.assert_array_equal(r.mask.spots, ref.spots)
        assert {"mask", "integrate", "total"} <= set(r.timings)


def test_process_frame_takes_a_users_mask(sims, unet):
    s = sims[0]
    extra = np.zeros(s.image.shape, bool)
    extra[:, :40] = True
    r = Pipeline(unet, s.geometry).process_frame(s.image, extra_static=extra)
    assert r.mask.static[:, :40].all() and not r.mask.spots[:, :40].any()
    assert r.mask.probability is not None


def test_policy_is_resolved_per_device_and_checked(unet):
    assert isinstance(unet, BatchMasker)
    cpu = resolve(None, unet)
    assert (cpu.batch, cpu.tile, cpu.integrate_on_device) == (1, 768, False)
    gpu = ExecutionPolicy().resolved("cuda", batchable=True, bf16=True)
    assert (gpu.batch, gpu.tile, gpu.precision, gpu.integrate_on_device) == (4, None, "bf16",
                                                                              True)
    no_bf16 = ExecutionPolicy().resolved("cuda", batchable=False, bf16=False)
    assert (no_bf16.batch, no_bf16.precision) == (1, "fp32")
    assert "768 px tiles" in cpu.describe()
    with pytest.raises(ConfigError, match="batch"):
        resolve(ExecutionPolicy(batch=0), unet)
    with pytest.raises(ConfigError, match="precision"):
        resolve(ExecutionPolicy(precision="int8"), unet)  # type: ignore[arg-type]


def test_policy_takes_the_maskers_engine_unless_one_is_asked_for(unet):
    assert resolve(None, unet).precision == unet.precision  # measured (or cached) here
    bf16 = UNetMasker(unet.model, precision="bf16")
    forced = resolve(None, bf16)
    assert forced.precision == "bf16" and "bf16" in forced.describe()
    assert resolve(ExecutionPolicy(precision="fp32"), bf16).precision == "fp32"
    assert ExecutionPolicy().resolved("cpu", batchable=True, bf16=False,
                                      preferred="bf16-fused").precision == "bf16-fused"


def test_needs_geometry_and_takes_empty_batches(sims, unet):
    with pytest.raises(GeometryError, match="geometry"):
        Pipeline(unet, None)
    assert Pipeline(unet, sims[0].geometry).process([]) == []


def test_the_policy_log_names_only_what_applies_to_the_masker(unet, caplog):
    """Tiles, halo and precision are the network's: the classical masker's line has none."""
    import logging

    with caplog.at_level(logging.INFO, logger="xrd_bluesky_mask.pipeline.policy"):
        resolve(None, RingOutlierMasker())
        resolve(None, unet)
    classical, network = (r.getMessage() for r in caplog.records)
    assert "masker classical on cpu" in classical and "no network" in classical
    assert "tiles" not in classical and "halo" not in classical and "fp32" not in classical
    assert "px tiles (halo" in network


def test_importing_the_package_quiets_the_missing_opencl_message() -> None:
    """pyFAI's lazy OpenCL probe logs a warning a user can do nothing about; with this
    package imported (as the profile and the Prefect flow do) it is not printed."""
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(level=logging.WARNING)\n"
            "import numpy as np, pyFAI\n"
            "{imp}"
            "ai = pyFAI.load({{'detector': 'Pilatus100k', 'dist': 0.1, 'wavelength': 1e-10}})\n"
            "ai.integrate1d(np.ones((195, 487)), 50)\n")
    runs = {imp: subprocess.run([sys.executable, "-c", code.format(imp=imp)], timeout=120,
                                capture_output=True, text=True)
            for imp in ("", "import xrd_bluesky_mask\n")}
    assert all(r.returncode == 0 for r in runs.values()), runs
    assert "pyOpenCl" in runs[""].stderr  # the probe does warn without the package
    assert "pyOpenCl" not in runs["import xrd_bluesky_mask\n"].stderr
