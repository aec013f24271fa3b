"""Model checkpoints with cards; the packaged default model lives in ``models/default``."""

from .card import ModelCard
from .store import DEFAULT_MODEL_DIR, LoadedModel, load_model, read_card, save_model

__all__ = ["DEFAULT_MODEL_DIR", "LoadedModel", "ModelCard", "load_model", "read_card", "save_model"]
