"""Masked azimuthal integration: pyFAI's ``integrate1d`` with a new mask every frame
(`integrate1d`, its options in `settings`), and the same sums as a torch sparse product on a
device (`csr`).

Masked pixels go to pyFAI as dummy values, so a new mask per frame does not rebuild pyFAI's
engine; `csr.TorchIntegrator` applies pyFAI's own CSR pixel-to-bin matrix on the masker's
device for batches of frames.
"""

from .integrate1d import (
    DELTA_DUMMY,
    DUMMY,
    Integrator,
    cached_integrator,
    clear_cache,
    integrate,
    q_to_tth,
    tth_to_q,
)
from .settings import IntegrationSettings

__all__ = ["DELTA_DUMMY", "DUMMY", "IntegrationSettings", "Integrator", "cached_integrator",
           "clear_cache", "integrate", "q_to_tth", "tth_to_q"]
