"""Model cards: what a checkpoint is, how it was made, how well it does.

Schema versions (each card carries ``schema_version``; older cards are upgraded on load):

1. The first card: architecture, input, threshold, weights file and sha256, parent, training,
   metrics, created.
2. Adds ``version`` (its number in a model registry; 0 is the packaged default),
   ``parent_sha256`` and ``runs`` (the Bluesky runs and frame indices a model was trained and
   evaluated on). A version-1 card reads as version 2 with those fields empty.
3. Adds ``decision``: the decision step after the network (`masking.decision.DecisionRule`
   settings; empty = the plain threshold). A version-2 card reads as version 3 with it empty.
4. The decision step's ``level``: its rules compare a pixel with the powder level of its own
   (ring, χ-sector) cell and the opposite cell (``"local"``), never with the whole ring's median,
   which cut preferred-orientation bands. A version-3 card's rule is read as local: the local
   rule fires on a subset of what the ring rule did (a cell's level is never below the
   ring's on a band), so its calibrated TNR can only rise.
5. Adds ``input.coarse_ring_bin_px`` and ``input.blob_sigmas_px``: optional input channels, the
   ring excess against rings of a second, coarser width, and the ring excess through matched
   filters (None and empty: the four channels of before). A version-4 card reads as version 5
   without them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .network import NORMALISATION_VERSION, NetworkConfig, channel_names

CARD_SCHEMA_VERSION = 5


class InputSpec(BaseModel):
    """The input the network was trained on; a mismatch means the model cannot be used."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] = Field(
        default_factory=list, description="channel names in order; empty: those of the ring "
        "widths below (`network.channel_names`)")
    normalisation_version: int = NORMALISATION_VERSION
    ring_bin_px: float = Field(default=2.0, gt=0, le=8,
                               description="2θ ring width of ``ring_excess``, px of radius")
    coarse_ring_bin_px: float | None = Field(
        default=None, gt=0, le=16,
        description="2θ ring width of the channel ``coarse_ring_excess`` (after the four), px of "
        "radius; None: no such channel")
    blob_sigmas_px: list[float] = Field(
        default_factory=list,
        description="Gaussian widths (sigma, px) of the matched filters of the last channel "
        "``blob_excess``; empty: no such channel")

    @model_validator(mode="after")
    def _fill_channels(self) -> InputSpec:
        if not self.channels:
            self.channels = list(channel_names(self.coarse_ring_bin_px, self.blob_sigmas_px))
        return self

    @property
    def expected_channels(self) -> tuple[str, ...]:
        """The channels this package builds for this input (a card whose ``channels``
        differ was made by another version)."""
        return channel_names(self.coarse_ring_bin_px, self.blob_sigmas_px)


class RunFrames(BaseModel):
    """Frames of one Bluesky run that a model was trained on and evaluated on."""

    model_config = ConfigDict(extra="forbid")

    uid: str = Field(description="start-document uid of the source run")
    train_frames: list[int] = Field(default_factory=list, description="0-based frame indices")
    heldout_frames: list[int] = Field(
        default_factory=list, description="annotated frames kept out of training, for metrics"
    )


def _upgrade_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 only adds optional fields: nothing to change but the number."""
    return {**data, "schema_version": 2}


def _upgrade_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 only adds ``decision`` (empty: the plain threshold, as before)."""
    return {**data, "schema_version": 3}


def _upgrade_v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 makes the decision step's level explicit: local (see the module docstring)."""
    decision = dict(data.get("decision") or {})
    if decision:
        decision["level"] = "local"
    return {**data, "decision": decision, "schema_version": 4}


def _upgrade_v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 only adds the optional ``input.coarse_ring_bin_px`` and ``blob_sigmas_px``."""
    return {**data, "schema_version": 5}


_UPGRADES = {1: _upgrade_v1_to_v2, 2: _upgrade_v2_to_v3, 3: _upgrade_v3_to_v4,
             4: _upgrade_v4_to_v5}


class ModelCard(BaseModel):
    """Beside every checkpoint: architecture, input, training provenance, metrics, checksum."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = CARD_SCHEMA_VERSION
    model_id: str
    description: str = ""
    architecture: NetworkConfig = Field(default_factory=NetworkConfig)
    network: str = "dlsia.core.networks.tunet.TUNet"
    input: InputSpec = Field(default_factory=InputSpec)
    threshold: float = Field(default=0.5, gt=0, lt=1, description="spot probability cut")
    decision: dict[str, Any] = Field(
        default_factory=dict,
        description="decision step after the threshold (DecisionRule fields); empty = none",
    )
    weights_file: str = "model.safetensors"
    sha256: str = ""
    parent: str | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    version: int | None = Field(
        default=None, ge=0,
        description="number in a model registry (0 = packaged default); None outside"
    )
    parent_sha256: str | None = Field(default=None,
                                      description="weights checksum of the parent model")
    runs: list[RunFrames] = Field(
        default_factory=list, description="Bluesky runs (uid + frames) trained and evaluated on"
    )

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        version = data.get("schema_version", CARD_SCHEMA_VERSION)
        if not isinstance(version, int) or version > CARD_SCHEMA_VERSION or version < 1:
            raise ValueError(
                f"model card schema_version {version!r} is not one this package reads "
                f"(1..{CARD_SCHEMA_VERSION}); a newer xrd-bluesky-mask wrote it: upgrade the "
                "package"
            )
        while version < CARD_SCHEMA_VERSION:
            data = _UPGRADES[version](data)
            version = data["schema_version"]
        return data
