"""The real detector frames beside the repository (``../shared/data/real``, see its README)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def require_real_data() -> Path:
    """The folder of real frames. Missing: a failure under CI (which has them beside the clone),
    else a skip that names the folder, so a silent skip never hides a test CI must run."""
    if not (REAL / "CeO2_Pilatus1M.tif").is_file():
        why = f"real detector frames not found in {REAL}"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI runs with ../shared beside the clone")
        pytest.skip(why)
    return REAL
