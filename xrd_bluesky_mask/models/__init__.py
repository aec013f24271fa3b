"""Model checkpoints with cards; the packaged default model lives in ``models/default``."""

from .card import ModelCard
from .store import (
    DEFAULT_MODEL_DIR,
    PACKAGED_MODELS,
    LoadedModel,
    load_model,
    packaged_model_dir,
    read_card,
    save_model,
)

__all__ = ["DEFAULT_MODEL_DIR", "PACKAGED_MODELS", "LoadedModel", "ModelCard", "load_model",
           "packaged_model_dir", "read_card", "save_model"]
