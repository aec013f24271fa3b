"""Decide an `ExecutionPolicy`'s ``"auto"`` fields for one masker, once, and log the choice.

The choices depend on where the masker runs (GPU or CPU), on what it can do (batches or
not) and, for the precision, on the masker's own measured engine choice (the U-Net's
``precision``: `xrd_bluesky_mask.masking.engines`); the pipeline, the worker and the
benchmark all take them from here.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocols import BatchMasker, ExecutionPolicy

log = logging.getLogger(__name__)


def masker_device(masker: Any) -> str:
    """``"cuda"``, ``"cpu"``…: where the masker's network runs (``"cpu"`` for model-free
    maskers)."""
    device = getattr(masker, "device", None)
    return str(getattr(device, "type", device or "cpu"))


def cuda_bf16() -> bool:
    """A CUDA device with bf16 arithmetic is present."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve(policy: ExecutionPolicy | None, masker: Any) -> ExecutionPolicy:
    """``policy`` (None = all ``"auto"``) with every choice made for ``masker``; logged."""
    from ..errors import ConfigError

    device = masker_device(masker)
    policy = policy or ExecutionPolicy()
    # the U-Net's engine for this machine: cached, or measured now (once per machine and model)
    preferred = getattr(masker, "precision", None) if policy.precision == "auto" else None
    try:
        resolved = policy.resolved(
            device, batchable=isinstance(masker, BatchMasker),
            bf16=device == "cuda" and cuda_bf16(),
            preferred=preferred if isinstance(preferred, str) else None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    log.info("xrd-mask: masker %s on %s: %s", getattr(masker, "name", type(masker).__name__),
             device, resolved.describe(network=getattr(masker, "device", None) is not None))
    return resolved
