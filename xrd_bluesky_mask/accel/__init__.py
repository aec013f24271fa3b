"""Device-side maths: masked integration as a torch sparse product (`TorchIntegrator`).

`TorchIntegrator` applies pyFAI's own CSR pixel-to-bin matrix with torch sparse maths, so the
mask can change every frame at no extra cost on a GPU (pyFAI's engine would need no rebuild
either, but runs on the CPU). The `~xrd_bluesky_mask.pipeline.Pipeline` uses it when its policy
integrates on the device.
"""

from .csr import TorchIntegrator

__all__ = ["TorchIntegrator"]
