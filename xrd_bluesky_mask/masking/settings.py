"""The U-Net masker's options as one pydantic model, validated once.

`UNetMasker` builds its `UNetSettings` from its keyword options (or takes one ready-made), and
the CLI builds the same model from its options (`xrd_bluesky_mask.commands._options`), so a bad
value is refused in one place with one message, named after the option the user typed. The
precision names are `xrd_bluesky_mask.protocols.Precision`, the type `ExecutionPolicy`'s
``precision`` has too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..protocols import Precision

__all__ = ["UNetSettings"]


class UNetSettings(BaseModel):
    """How a `UNetMasker` runs (see its parameters for what each field means)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = None
    inference: Literal["halo", "quilt"] = "halo"
    tta: bool = False
    device: str | None = None
    window: int = Field(256, ge=1)
    step: int = Field(192, ge=1)
    border: int = Field(32, ge=0)
    batch_size: int = Field(16, ge=1)
    engine: Literal["auto", "fused", "module"] = "auto"
    precision: Precision | Literal["auto"] = "auto"
    candidates: Literal["off", "fast", "on"] = "off"

    @field_validator("threshold")
    @classmethod
    def _threshold_is_a_probability(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError("must be in (0, 1)")
        return value

    @model_validator(mode="after")
    def _candidates_need_halo(self) -> UNetSettings:
        if self.candidates == "on" and self.inference != "halo":
            raise ValueError("candidates='on' needs inference='halo'")
        return self
