"""xrd-bluesky-mask: single-crystal spot masks for powder-XRD frames, live in Bluesky/Tiled."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import predict_mask

__version__ = "0.1.0"

__all__ = ["__version__", "predict_mask"]

#: Loggers that only say an optional accelerator is missing (pyFAI runs without OpenCL; the
#: user can do nothing about it). Quietened wherever this package is imported (the CLI, the
#: beamline profile, the Prefect flow, the Dioptas plugin), unless the application set them.
QUIET_LOGGERS = ("silx.opencl.common", "pyFAI.opencl")
for _name in QUIET_LOGGERS:
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.ERROR)


def __getattr__(name: str) -> Any:
    # lazy, so that `import xrd_bluesky_mask` stays light (no torch, no pyFAI)
    if name == "predict_mask":
        from .api import predict_mask

        return predict_mask
    raise AttributeError(f"module 'xrd_bluesky_mask' has no attribute {name!r}")
