"""Pixel metrics and the operating point (threshold for a target true-negative rate)."""

from __future__ import annotations

import numpy as np
import torch


def operating_point(prob: torch.Tensor, y: torch.Tensor, target_tnr: float) -> dict[str, float]:
    """Threshold giving ``target_tnr`` on the negative pixels, and the recall it reaches.

    ``prob`` is the spot probability and ``y`` the labels (0, 1, -1 = ignore), same shape.
    The TNR reached is at least ``target_tnr`` (ties at the threshold count as negatives).
    """
    p = prob.flatten().float()
    t = y.flatten()
    neg, pos = p[t == 0], p[t == 1]
    if neg.numel() == 0:
        thr = 0.5
    else:
        k = min(neg.numel() - 1, int(np.ceil(target_tnr * neg.numel())))
        thr = float(torch.kthvalue(neg.cpu(), k + 1).values) if neg.numel() > 1 else float(neg[0])
        thr = max(thr, 1e-4)
        if float((neg < thr).float().mean()) < target_tnr:
            # negatives tied at the threshold (e.g. one constant output over blank input)
            # would count as spots: step just above them, so the TNR is at least the target
            thr = float(np.nextafter(np.float32(thr), np.float32(np.inf)))
    tnr = float((neg < thr).float().mean()) if neg.numel() else float("nan")
    recall = float((pos >= thr).float().mean()) if pos.numel() else float("nan")
    return {"threshold": thr, "tnr": tnr, "recall": recall}
