"""xrd-bluesky-mask: single-crystal spot masks for powder-XRD frames, live in Bluesky/Tiled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import predict_mask

__version__ = "0.1.0"

__all__ = ["__version__", "predict_mask"]


def __getattr__(name: str) -> Any:
    # lazy, so that `import xrd_bluesky_mask` stays light (no torch, no pyFAI)
    if name == "predict_mask":
        from .api import predict_mask

        return predict_mask
    raise AttributeError(f"module 'xrd_bluesky_mask' has no attribute {name!r}")
