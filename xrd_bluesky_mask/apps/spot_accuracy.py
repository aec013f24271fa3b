"""How well a frame's spot table (`xrd_bluesky_mask.spots`) matches a simulated frame's ground
truth: rows within 2 px of a true spot centre, and the integrated net intensity of isolated
spots (one true spot in the masked component, no other spot centre within 8 px) against the
true excess (the image minus the spot-free image, summed over the spot's labelled pixels).
Used by ``benchmarks/spot_table.py`` and the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..masking.decision import component_labels
from ..masking.preprocess import prepare_frame
from ..spots import powder_level, spot_table


def spot_table_accuracy(sim: Any, spots: np.ndarray, static: np.ndarray,
                        probability: np.ndarray | None = None) -> dict[str, float]:
    """``{"rows", "matched", "isolated", "err_median", "err_p90"}`` of the spot table of
    ``sim`` (a `SimulatedFrame`) masked with ``spots``: see the module docstring."""
    f32, _ = prepare_frame(sim.image, sim.geometry, extra_static=sim.static_mask)
    level = powder_level(f32, spots, static, sim.geometry)
    table = spot_table(f32, spots, static, sim.geometry, probability=probability, level=level)
    centres = np.array([(s.row, s.col) for s in sim.spots]) if sim.spots else np.zeros((0, 2))
    if len(table) == 0 or len(centres) == 0:
        return {"rows": len(table), "matched": float("nan"), "isolated": 0,
                "err_median": float("nan"), "err_p90": float("nan")}
    d = np.hypot(table["row_px"].to_numpy()[:, None] - centres[None, :, 0],
                 table["col_px"].to_numpy()[:, None] - centres[None, :, 1])
    matched = d.min(axis=1) <= 2.0
    labels, _ = component_labels(spots & ~static)
    excess = sim.image.astype(np.float64) - sim.spot_free
    errs = []
    rows, cols = table["row_px"].to_numpy(), table["col_px"].to_numpy()
    net = table["integrated_net_counts"].to_numpy()
    for i in range(len(table)):
        j = int(np.argmin(d[i]))
        if d[i, j] > 2.0:
            continue
        r, c = int(round(rows[i])), int(round(cols[i]))
        comp = labels == labels[r, c] if labels[r, c] else None
        if comp is None:
            continue
        ids = np.unique(sim.spot_ids[comp])
        others = np.delete(centres, j, axis=0)
        alone = (ids[ids > 0].size == 1
                 and (others.size == 0 or np.hypot(*(others - centres[j]).T).min() > 8.0))
        true = float(excess[sim.spot_ids == sim.spots[j].spot_id].sum())
        if alone and true > 0:
            errs.append(abs(float(net[i]) - true) / true)
    return {"rows": len(table), "matched": float(matched.mean()), "isolated": len(errs),
            "err_median": float(np.median(errs)) if errs else float("nan"),
            "err_p90": float(np.percentile(errs, 90)) if errs else float("nan")}
