"""Shared fixtures: a seeded rng, small geometries, a tiny U-Net model folder; the live ones
(Tiled server, Session with RunEngine and TiledWriter, simulated detectors) come from the
`xrd_bluesky_mask.testing` plugin, registered here once for the whole suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["xrd_bluesky_mask.testing"]


@pytest.fixture(scope="session", autouse=True)
def isolated_model_registry(tmp_path_factory):
    """A fresh model registry for the whole run, so a developer's own active model (or a test
    that activates one) never changes what the other tests load."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRD_MASK_MODELS", str(tmp_path_factory.mktemp("registry")))
        yield


@pytest.fixture(scope="session", autouse=True)
def isolated_journal(tmp_path_factory):
    """Live masking keeps its results journal, and sessions their run backups, in folders of
    this test run, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRD_MASK_JOURNAL", str(tmp_path_factory.mktemp("journal")))
        mp.setenv("XRD_MASK_RUN_BACKUP", str(tmp_path_factory.mktemp("run-backup")))
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (same numbers every run)."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def small_geometry():
    """A 256x256, 150 µm pixel detector 0.12 m from the sample (rings across the frame)."""
    from xrd_bluesky_mask.geometry import make_geometry

    return make_geometry((256, 256), pixel_size_m=150e-6, distance_m=0.12)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model folder holding a small, untrained dlsia U-Net (depth 2, 4 base channels)."""
    import torch

    from xrd_bluesky_mask.models import ModelCard, save_model
    from xrd_bluesky_mask.models.network import NetworkConfig, build_network

    torch.manual_seed(0)
    cfg = NetworkConfig(depth=2, base_channels=4)
    net = build_network(cfg)
    folder = tmp_path_factory.mktemp("tiny_model")
    return save_model(net, ModelCard(model_id="tiny-untrained", architecture=cfg), folder)


@pytest.fixture
def short_client_retries(monkeypatch):
    """Two attempts per Tiled request instead of ten (TiledWriter fails over in ~1 s rather
    than ~24 s; a server error is given up in ~1 s rather than ~45 s):
    `tiled.client.utils.TILED_RETRY_ATTEMPTS` is read at each request."""
    import tiled.client.utils

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_ATTEMPTS", 2)
