"""Model folders: safetensors + card, checksum verified, mismatches refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from xrd_bluesky_mask.errors import ModelError
from xrd_bluesky_mask.models import ModelCard, load_model, read_card, save_model


def test_roundtrip_is_bit_identical(tiny_model_dir, tmp_path):
    m = load_model(tiny_model_dir, device="cpu")
    assert m.card.model_id == "tiny-untrained" and len(m.card.sha256) == 64
    out = save_model(m.net, m.card.model_copy(update={"model_id": "copy"}), tmp_path / "copy")
    m2 = load_model(out, device="cpu")
    x = torch.randn(1, 4, 64, 64)
    with torch.inference_mode():
        assert torch.equal(m.net(x), m2.net(x))
    assert m2.card.sha256 == m.card.sha256


def test_checksum_mismatch_is_refused(tiny_model_dir, tmp_path):
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(bad, device="cpu")


def test_missing_card_and_bad_card(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="no model card"):
        read_card(tmp_path)
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    card = json.loads((bad / "model_card.json").read_text())
    card["misspelt_field"] = 1
    (bad / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="invalid"):
        read_card(bad)


def test_input_mismatch_is_refused(tiny_model_dir, tmp_path):
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    card = read_card(other)
    card.input.channels = ["log_frame"]
    (other / "model_card.json").write_text(card.model_dump_json())
    with pytest.raises(ModelError, match="expects input"):
        load_model(other, device="cpu")


def test_card_rejects_unknown_keys():
    with pytest.raises(ValueError):
        ModelCard(model_id="x", colour="red")


def test_a_card_of_version_4_reads_as_four_channels_and_names_the_fifth_when_set():
    old = {"schema_version": 4, "model_id": "old", "input": {
        "channels": ["log_frame", "ring_excess", "sector_excess", "opposite_sector_excess"],
        "normalisation_version": 2, "ring_bin_px": 2.0}}
    card = ModelCard.model_validate(old)
    assert card.schema_version == 5 and card.input.coarse_ring_bin_px is None
    assert tuple(card.input.channels) == card.input.expected_channels
    two = ModelCard(model_id="two", input={"ring_bin_px": 0.5, "coarse_ring_bin_px": 2.0})
    assert two.input.channels[-1] == "coarse_ring_excess" and len(two.input.channels) == 5


def test_a_card_whose_input_does_not_fit_its_network_is_refused(tiny_model_dir, tmp_path):
    """A card naming the coarse channel over four-channel weights: refused before loading."""
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    card = read_card(other)
    card.input = card.input.model_validate({"ring_bin_px": 0.5, "coarse_ring_bin_px": 2.0})
    (other / "model_card.json").write_text(card.model_dump_json())
    with pytest.raises(ModelError, match="takes 4 input channels, its card's input has 5"):
        load_model(other, device="cpu")
