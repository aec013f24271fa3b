"""Quality measures: pixel and spot-level agreement of masks, fidelity of 1D patterns."""

from __future__ import annotations

import numpy as np
import xarray as xr


def pixel_metrics(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """Recall, true-negative rate, precision and counts for bool masks (True = spot).

    Only pixels where ``valid`` is True count (e.g. exclude the static mask).
    """
    if valid is None:
        valid = np.ones(truth.shape, dtype=bool)
    p, t = pred[valid], truth[valid]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(np.count_nonzero(~p & ~t))
    return {
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "tnr": tn / (tn + fp) if tn + fp else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def spot_counts(
    pred: np.ndarray,
    spot_ids: np.ndarray,
    valid: np.ndarray | None = None,
    min_covered: float = 0.5,
) -> tuple[int, int]:
    """``(found, total)``: labelled spots with at least ``min_covered`` of their pixels masked.

    ``spot_ids`` is int ``(rows, cols)``: 0 = no spot, k = pixels of spot k. Only pixels where
    ``valid`` is True count (a spot with no valid pixel is not counted at all).
    """
    found = spot_found(pred, spot_ids, valid, min_covered)
    return sum(found.values()), len(found)


def spot_found(
    pred: np.ndarray,
    spot_ids: np.ndarray,
    valid: np.ndarray | None = None,
    min_covered: float = 0.5,
) -> dict[int, bool]:
    """``{spot id: found}`` for every labelled spot with a valid pixel (see `spot_counts`)."""
    sel = spot_ids > 0
    if valid is not None:
        sel &= valid
    ids = spot_ids[sel]
    if ids.size == 0:
        return {}
    n = int(spot_ids.max()) + 1
    total = np.bincount(ids, minlength=n)
    hit = np.bincount(ids, weights=pred[sel].astype(np.float64), minlength=n)
    present = np.flatnonzero(total > 0)
    return {int(k): bool(hit[k] / total[k] >= min_covered) for k in present}


def spot_recall(pred: np.ndarray, spot_ids: np.ndarray, min_covered: float = 0.5) -> float:
    """Fraction of labelled spots with at least ``min_covered`` of their pixels masked."""
    found, total = spot_counts(pred, spot_ids, min_covered=min_covered)
    return found / total if total else float("nan")


def rwp(pattern: xr.DataArray | np.ndarray, reference: xr.DataArray | np.ndarray) -> float:
    """Weighted-profile R factor of ``pattern`` against ``reference`` (Poisson weights 1/ref).

    Bins that are NaN in either pattern, or non-positive in the reference, are skipped.
    """
    y = np.asarray(pattern, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(r) & (r > 0)
    if not ok.any():
        return float("nan")
    w = 1.0 / r[ok]
    return float(np.sqrt(np.sum(w * (y[ok] - r[ok]) ** 2) / np.sum(w * r[ok] ** 2)))
