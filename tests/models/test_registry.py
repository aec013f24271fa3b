"""The model registry: numbered versions, the active model, no overwrites, the CLI."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading

import pytest

from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.errors import ModelError
from xrd_bluesky_mask.masking import get_masker
from xrd_bluesky_mask.models import (
    DEFAULT_MODEL_DIR,
    PACKAGED_MODELS,
    ModelCard,
    read_card,
    save_model,
)
from xrd_bluesky_mask.models.card import CARD_SCHEMA_VERSION
from xrd_bluesky_mask.models.registry import (
    ModelRegistry,
    active_model_dir,
    default_registry_dir,
)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An empty registry that is also the default one (never the user's home)."""
    monkeypatch.setenv("XRD_MASK_MODELS", str(tmp_path / "registry"))
    return ModelRegistry()


@pytest.fixture
def other_model(tmp_path):
    """A second small model folder (different weights from tiny_model_dir)."""
    import torch

    from xrd_bluesky_mask.models.network import NetworkConfig, build_network

    torch.manual_seed(1)
    cfg = NetworkConfig(depth=2, base_channels=4)
    return save_model(build_network(cfg), ModelCard(model_id="other", architecture=cfg),
                      tmp_path / "other")


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_directory_from_env_or_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XRD_MASK_MODELS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_registry_dir() == tmp_path / "xdg" / "xrd-bluesky-mask" / "models"
    monkeypatch.setenv("XRD_MASK_MODELS", str(tmp_path / "elsewhere"))
    assert default_registry_dir() == tmp_path / "elsewhere"
    assert ModelRegistry(tmp_path / "given").root == tmp_path / "given"


@pytest.mark.skipif(sys.platform != "linux", reason="platformdirs' XDG layout is Linux's")
def test_directory_defaults_to_the_xdg_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("XRD_MASK_MODELS", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".local" / "share" / "xrd-bluesky-mask" / "models"
    assert default_registry_dir() == expected


def test_register_waits_for_the_registry_lock(registry, tiny_model_dir):
    """While another writer holds the lock (a FileLock of its own, like another process's),
    register waits, which filelock logs, and it finishes once the lock is released. The
    order is forced, not timed: the lock is released only after register has been seen
    waiting for it."""
    from filelock import FileLock

    registry.root.mkdir(parents=True)
    waiting = threading.Event()

    class _Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "not acquired" in record.getMessage():
                waiting.set()

    logger, handler = logging.getLogger("filelock"), _Seen()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    done: list = []
    try:
        with FileLock(registry.root / ".lock"):
            writer = threading.Thread(target=lambda: done.append(registry.register(
                tiny_model_dir)))
            writer.start()
            assert waiting.wait(60), "register never waited for the lock"
            assert not done  # it cannot finish while the lock is held
        writer.join(60)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [entry.version for entry in done] == [1]


def test_empty_registry_serves_the_packaged_model_as_version_0(registry):
    (entry,) = registry.entries()
    assert entry.version == 0 and entry.active and entry.path == DEFAULT_MODEL_DIR
    assert registry.get("default") == registry.get("active") == registry.get(0) == entry
    assert registry.get(entry.model_id).version == 0
    assert active_model_dir() == DEFAULT_MODEL_DIR
    assert registry.load(device="cpu").card.sha256 == entry.sha256
    assert not registry.root.exists()  # reading writes nothing
    with pytest.raises(ModelError, match=r"no model version 3 .* registered versions: 0 \("):
        registry.get("v3")
    with pytest.raises(ModelError, match="no model 'nope'"):
        registry.get("nope")


def test_register_never_overwrites(registry, tiny_model_dir, other_model):
    e1 = registry.register(tiny_model_dir, model_id="tiny-r{version}",
                           updates={"description": "first", "runs": [{"uid": "u1",
                                                                      "train_frames": [0, 1],
                                                                      "heldout_frames": [2]}]})
    assert (e1.version, e1.model_id, e1.active) == (1, "tiny-r1", False)
    card = read_card(e1.path)
    assert card.version == 1 and card.description == "first" and card.runs[0].heldout_frames == [2]
    assert card.sha256 == read_card(tiny_model_dir).sha256
    with pytest.raises(ModelError, match="already registered as version 1"):
        registry.register(tiny_model_dir, model_id="again")
    with pytest.raises(ModelError, match="'tiny-r1' is already version 1"):
        registry.register(other_model, model_id="tiny-r1")
    with pytest.raises(ModelError, match="version 1 already exists"):
        registry.register(other_model, version=1)
    with pytest.raises(ModelError, match="version 0 already exists"):
        registry.register(other_model, version=0)
    e2 = registry.register(other_model)
    assert (e2.version, e2.model_id) == (2, "other")
    assert [e.version for e in registry.entries()] == [0, 1, 2]
    assert registry.active().version == 0  # registering does not activate


def test_activate_switches_the_default_unet(registry, tiny_model_dir):
    entry = registry.register(tiny_model_dir)
    registry.activate("tiny-untrained")
    assert registry.active().version == entry.version
    pointer = json.loads((registry.root / "active.json").read_text())
    assert pointer["version"] == 1 and pointer["sha256"] == entry.sha256 and pointer["by"]
    assert active_model_dir() == entry.path
    # what the masker, predict_mask and the callback use when no model is given
    assert get_masker("unet").settings()["model_id"] == "tiny-untrained"
    registry.activate("default")
    assert get_masker("unet").settings()["model_id"] == registry.get(0).model_id


def test_damaged_weights_are_refused(registry, tiny_model_dir):
    entry = registry.register(tiny_model_dir)
    registry.activate(1)
    weights = entry.path / entry.card.weights_file
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        registry.load("active")
    with pytest.raises(ModelError, match="checksum mismatch"):
        registry.activate(1)
    with pytest.raises(ModelError, match="checksum mismatch"):
        get_masker("unet")  # no silent fallback to another model


def test_transaction_undoes_registration_and_activation(registry, tiny_model_dir, other_model):
    registry.register(tiny_model_dir)
    registry.activate(1)
    before = _files(registry.root)
    with pytest.raises(RuntimeError, match="abort"), registry.transaction():
        new = registry.register(other_model)
        registry.activate(new.version)
        assert registry.active().version == 2
        raise RuntimeError("abort")
    assert _files(registry.root) == before
    assert registry.active().version == 1 and [e.version for e in registry.entries()] == [0, 1]


def test_remove_refuses_the_active_and_packaged_models(registry, tiny_model_dir, other_model):
    registry.register(tiny_model_dir)
    registry.register(other_model)
    registry.activate(2)
    for ref in (0, 2):
        with pytest.raises(ModelError, match="activate another version first"):
            registry.remove(ref)
    registry.remove(1)
    assert [e.version for e in registry.entries()] == [0, 2]
    assert registry.register(tiny_model_dir).version == 3  # numbers are not reused


def test_cards_of_schema_1_load_and_newer_ones_are_refused(tmp_path, tiny_model_dir):
    v1 = shutil.copytree(tiny_model_dir, tmp_path / "v1")
    old = json.loads((v1 / "model_card.json").read_text())
    old["schema_version"] = 1  # a card written before the registry existed
    for key in ("version", "parent_sha256", "runs", "decision"):
        old.pop(key, None)
    (v1 / "model_card.json").write_text(json.dumps(old))
    card = read_card(v1)
    assert card.schema_version == CARD_SCHEMA_VERSION == 5
    assert card.runs == [] and card.decision == {}
    assert read_card(DEFAULT_MODEL_DIR).schema_version == CARD_SCHEMA_VERSION
    newer = shutil.copytree(tiny_model_dir, tmp_path / "newer")
    data = json.loads((newer / "model_card.json").read_text())
    data["schema_version"] = 99
    (newer / "model_card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="newer xrd-bluesky-mask"):
        read_card(newer)


def test_models_cli(registry, tiny_model_dir, capsys):
    assert main(["models", "register", str(tiny_model_dir), "--model-id", "cli-{version}"]) == 0
    assert "registered cli-1 as version 1" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert str(registry.root) in out
    packaged = registry.get(0).model_id
    rows = [line for line in out.splitlines() if "cli-1" in line or packaged in line]
    assert rows[0].startswith("*") and not rows[1].startswith("*")
    # every row's columns line up with the header's, the long packaged names included
    table = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(table) == 5
    starts = {line.index(" xrdmask-") if " xrdmask-" in line else line.index(" cli-1")
              for line in table[1:]}
    assert starts == {table[0].index(" model id")}
    assert len({line.index("sha256") for line in table[:1]} | {
        len(line.rstrip()) - 12 for line in table[1:]}) == 1
    assert main(["models", "activate", "v1"]) == 0
    assert "active model: version 1 (cli-1" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(m["version"], m["active"]) for m in listing] == [(0, False), (1, True),
                                                              (None, False), (None, False)]
    assert [m["name"] for m in listing[2:]] == ["light", "default-v2"]
    assert main(["models", "show", "active"]) == 0
    out = capsys.readouterr().out
    assert "version 1 (active): cli-1" in out and "depth 2" in out
    assert main(["models", "show", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] == registry.get(0).model_id
    assert main(["models", "activate", "nope"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    other = tiny_model_dir.parent / "elsewhere"
    assert main(["models", "--registry", str(other), "list"]) == 0
    assert str(other) in capsys.readouterr().out and not other.exists()


def test_the_packaged_light_model_is_listed_shown_and_activated_as_its_error_says(registry,
                                                                                  capsys):
    light = read_card(PACKAGED_MODELS["light"])
    assert main(["models", "list"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if light.model_id in line]
    assert row.split()[:2] == ["light", light.model_id] and not row.startswith("*")
    assert main(["models", "show", "light"]) == 0
    out = capsys.readouterr().out
    assert f"packaged model 'light': {light.model_id}" in out and "depth 4" in out
    assert registry.get(light.model_id).path == PACKAGED_MODELS["light"]
    with pytest.raises(ModelError, match="is a packaged model"):
        registry.remove("light")
    assert main(["models", "activate", "light"]) == 2
    err = capsys.readouterr().err
    assert "is not a registry version" in err
    command = err.split("activate that: ", 1)[1].split()
    assert command[:3] == ["xrd-mask", "models", "register"]
    assert main(command[1:]) == 0
    active = registry.active()
    assert active.version == 1 and active.model_id == light.model_id
    assert active.sha256 == light.sha256
