"""Fixtures of the bluesky tests with a Tiled server that goes away (test_outage.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def short_client_retries(monkeypatch):
    """Two attempts per Tiled request instead of ten (TiledWriter fails over in ~1 s rather
    than ~24 s: `tiled.client.utils.TILED_RETRY_ATTEMPTS` is read at each request)."""
    import tiled.client.utils

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_ATTEMPTS", 2)
