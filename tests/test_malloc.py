"""glibc allocator settings: applied once, and they keep large freed blocks in the heap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xrd_bluesky_mask.malloc import retain_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings are Linux-only")
def test_settings_apply_and_a_freed_large_block_is_reused():
    # a fresh interpreter: minor page faults of ten rounds of feature-map-like blocks (24 MB,
    # overlapping lifetimes), after one round to warm up
    code = """
import resource, sys, numpy as np
from xrd_bluesky_mask.malloc import retain_freed_memory
assert retain_freed_memory() == (sys.argv[1] == "1")
def round_():
    a = np.ones(3_000_000); b = np.ones(3_000_000); del a
    c = np.ones(1_500_000); d = np.ones(3_000_000); del b, c, d
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = [int(subprocess.run(
        [sys.executable, "-c", code, flag], check=True, capture_output=True, text=True,
        env={**os.environ, "XRD_MASK_MALLOC_DEFAULTS": "0" if flag == "1" else "1"},
    ).stdout.split()[-1]) for flag in ("0", "1")]
    # glibc's default gives freed blocks back to the kernel and faults them in again
    assert faults[0] > 5_000 and faults[1] < 500, faults


def test_applies_once(monkeypatch):
    """The second call answers from the first: glibc is asked once per process."""
    import ctypes

    from xrd_bluesky_mask import malloc

    monkeypatch.setattr(malloc, "_done", None)
    monkeypatch.delenv("XRD_MASK_MALLOC_DEFAULTS", raising=False)
    opened = []
    real = ctypes.CDLL
    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda *a, **k: opened.append(a) or real(*a, **k))
    first = retain_freed_memory()
    assert retain_freed_memory() is first
    linux = sys.platform.startswith("linux")
    assert first is linux and len(opened) == int(linux)
