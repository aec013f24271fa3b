"""predict_mask follows the active model of the registry within one session."""

import numpy as np

from xrd_bluesky_mask.api import _default_masker
from xrd_bluesky_mask.models.registry import ModelRegistry


def test_default_masker_follows_activation(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("XRD_MASK_MODELS", str(tmp_path / "reg"))
    reg = ModelRegistry()
    first = _default_masker("unet")
    assert first.model.card.model_id == reg.get("default").model_id
    entry = reg.register(tiny_model_dir, model_id="tiny-test")
    reg.activate(entry.version)
    second = _default_masker("unet")
    assert second is not first and second.model.card.model_id == "tiny-test"
    reg.activate("default")
    assert _default_masker("unet").model.card.model_id == first.model.card.model_id
    assert np.isfinite(second.threshold)
