"""The fast path: batched whole-frame inference and masked integration on the torch device.

`TorchIntegrator` applies pyFAI's own CSR pixel-to-bin matrix with torch sparse maths, so the
mask and the pattern of a frame never leave the device (GPU) or pyFAI's engine is never asked
to rebuild (CPU). `FastPipeline` masks and integrates several frames at once with it.
Both are checked against the reference path (`UNetMasker` + `Integrator`) in the tests and by
``xrd-mask bench``.
"""

from .csr import TorchIntegrator

__all__ = ["FastPipeline", "TorchIntegrator"]
from .pipeline import FastPipeline
