"""Hand-built frames for masker tests (independent of the simulator)."""

from __future__ import annotations

import numpy as np


def ring_frame(geometry, rng, *, level=200.0, ring_tth=8.0, ring_peak=2000.0, width_deg=0.15,
               po_strength=0.0, po_chi=30.0, po_width_deg=8.0, spots=()):
    """Poisson frame: flat background + one powder ring (+ a PO band at χ0 and χ0+180°)
    + gaussian spots given as (row, col, sigma_px, peak_counts). Returns (frame, expected)."""
    tth, chi = geometry.tth_deg(), geometry.chi_deg()
    ring = ring_peak * np.exp(-0.5 * ((tth - ring_tth) / (width_deg / 2.355)) ** 2)
    if po_strength:
        d = np.abs(((chi - po_chi) + 90.0) % 180.0 - 90.0)  # distance to χ0 or χ0+180, deg
        ring = ring * (1.0 + po_strength * np.exp(-0.5 * (d / po_width_deg) ** 2))
    expected = level + ring
    rr, cc = np.indices(geometry.shape)
    for r, c, s, peak in spots:
        expected = expected + peak * np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / s**2)
    frame = rng.poisson(expected).astype(np.float32)
    return frame, expected.astype(np.float32)
