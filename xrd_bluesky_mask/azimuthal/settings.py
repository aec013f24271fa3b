"""`IntegrationSettings`: how a frame is reduced to a 1D pattern (pyFAI ``integrate1d`` options).

One validated set of options per worker, reprocessing job or command (the CLI builds it from
``--npt``, ``--unit``, ...), recorded with the results' provenance; the pyFAI method is checked
against the splittings, algorithms and implementations pyFAI has.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["IntegrationSettings"]

_SPLITS = {"no", "bbox", "pseudo", "full"}
_ALGOS = {"histogram", "lut", "csr", "csc"}
_IMPLS = {"python", "cython", "opencl"}


class IntegrationSettings(BaseModel):
    """How a frame is reduced to a 1D pattern (pyFAI ``integrate1d`` options)."""

    model_config = ConfigDict(extra="forbid")

    npt: int = Field(default=2000, ge=16)
    """Number of radial bins in the output pattern (≥ 16)."""

    unit: Literal["2th_deg", "q_A^-1"] = "2th_deg"
    """Binning unit: scattering angle 2θ in degrees, or momentum transfer q in 1/Å."""

    method: tuple[str, str, str] = ("bbox", "csr", "cython")
    """pyFAI method ``(pixel splitting, algorithm, implementation)``."""

    polarization_factor: float | None = None
    """Polarisation factor in [-1, 1] (0.99: horizontal synchrotron beam); None = no correction."""

    correct_solid_angle: bool = True
    """Divide each pixel by its solid angle (pyFAI's ``correctSolidAngle``)."""

    radial_range: tuple[float, float] | None = None
    """``(low, high)`` range of the binned axis, in ``unit`` (degrees or 1/Å); None = full frame."""

    error_model: Literal["poisson", "azimuthal", None] = "poisson"
    """How ``sigma`` is estimated: Poisson counting (variance = I), azimuthal scatter, or None."""

    @field_validator("method", mode="before")
    @classmethod
    def _check_method(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.replace("/", ",").split(","))
        try:
            split, algo, impl = (str(v).lower() for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"method must be 3 strings (splitting, algorithm, implementation), got {value!r}"
            ) from None
        problems = []
        if split not in _SPLITS:
            problems.append(f"splitting {split!r} not in {sorted(_SPLITS)}")
        if algo not in _ALGOS:
            problems.append(f"algorithm {algo!r} not in {sorted(_ALGOS)}")
        if impl not in _IMPLS:
            problems.append(f"implementation {impl!r} not in {sorted(_IMPLS)}")
        if problems:
            raise ValueError("unknown pyFAI method: " + "; ".join(problems))
        return (split, algo, impl)

    @field_validator("polarization_factor")
    @classmethod
    def _check_polarization(cls, value: float | None) -> float | None:
        if value is not None and not -1.0 <= value <= 1.0:
            raise ValueError(f"polarization_factor must be in [-1, 1] or None, got {value}")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> IntegrationSettings:
        if self.radial_range is not None:
            low, high = self.radial_range
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"radial_range must be two finite numbers with low < high, got "
                    f"{self.radial_range} ({self.unit})"
                )
        return self
