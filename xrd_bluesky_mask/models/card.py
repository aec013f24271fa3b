"""Model cards: what a checkpoint is, how it was made, how well it does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..masking.network import NetworkConfig
from ..masking.preprocess import CHANNELS, NORMALISATION_VERSION

CARD_SCHEMA_VERSION = 1


class InputSpec(BaseModel):
    """The input the network was trained on; a mismatch means the model cannot be used."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] = Field(default_factory=lambda: list(CHANNELS))
    normalisation_version: int = NORMALISATION_VERSION
    ring_bin_px: float = 2.0


class ModelCard(BaseModel):
    """Beside every checkpoint: architecture, input, training provenance, metrics, checksum."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = CARD_SCHEMA_VERSION
    model_id: str
    description: str = ""
    architecture: NetworkConfig = Field(default_factory=NetworkConfig)
    network: str = "dlsia.core.networks.tunet.TUNet"
    input: InputSpec = Field(default_factory=InputSpec)
    threshold: float = Field(0.5, gt=0, lt=1, description="spot probability cut")
    weights_file: str = "model.safetensors"
    sha256: str = ""
    parent: str | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
