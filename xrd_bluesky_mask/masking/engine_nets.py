"""The U-Net as a callable ``net(x) -> logits`` in each engine, built on first use and kept.

`EngineNets` holds one masker's network per engine (`xrd_bluesky_mask.masking.engines`'
``ENGINES``): ``fp32`` is the masker's own (the fused oneDNN plan on a CPU, else the module),
``bf16`` and ``fp16`` the module under ``torch.autocast``, ``bf16-fused`` a fused plan of a
bf16 copy of the module (CPU only); ``compile`` wraps the module in ``torch.compile`` (once).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .engines import ENGINES
from .fused import fuse_tunet

if TYPE_CHECKING:
    import torch

__all__ = ["EngineNets"]


class EngineNets:
    """A network's callables per engine.

    Parameters
    ----------
    module
        The network module (batch norm folded).
    fp32
        What runs fp32: the module, or its fused plan.
    device_type
        ``"cpu"`` or ``"cuda"``: where the autocast engines run.
    """

    def __init__(self, module: Any, fp32: Any, device_type: str) -> None:
        self.module, self.device_type = module, device_type
        self._fp32 = fp32
        self._nets: dict[str, Any] = {"fp32": fp32}
        self._compiled: Any = None

    def get(self, engine: str, *, compile: bool = False) -> Any:
        """The network running in ``engine``; ``compile`` wraps the module in
        ``torch.compile``. A RuntimeError where the engine cannot run here (``bf16-fused``
        off the CPU)."""
        import torch

        key = engine + (" compiled" if compile else "")
        net = self._nets.get(key)
        if net is not None:
            return net
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        if engine == "bf16-fused":
            plan = fuse_tunet(copy.deepcopy(self.module).to(torch.bfloat16))
            if plan is None or compile:
                raise RuntimeError("bf16-fused needs the fused oneDNN plan on the CPU, "
                                   "without compile")
            net = plan
        else:
            base = self._fp32 if engine == "fp32" and not compile else self.module
            if compile:
                if self._compiled is None:
                    self._compiled = torch.compile(self.module)
                base = self._compiled
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(engine)
            net = base if dtype is None else _Autocast(base, self.device_type, dtype)
        self._nets[key] = net
        return net


class _Autocast:
    """``net`` called under ``torch.autocast(device_type, dtype)``."""

    def __init__(self, net: Any, device_type: str, dtype: Any) -> None:
        self.net, self.device_type, self.dtype = net, device_type, dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.net(x)
