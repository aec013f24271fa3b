"""The optional extras the test command installs (``dioptas``, ``prefect``): imported here so a
missing one fails under CI, where scripts/setup.sh installs it, and is a named skip elsewhere."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require_extra(module: str, extra: str) -> ModuleType:
    """Import ``module`` of the install extra ``extra``, or fail (CI) / skip (elsewhere)."""
    if module.split(".")[0] == "dioptas":
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Dioptas imports Qt: no display
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f"{module} is not installed (pip install 'xrd-bluesky-mask[{extra}]'): {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; scripts/setup.sh installs it for the tests")
        pytest.skip(why)
