"""Saving and loading checkpoints: safetensors weights + a JSON model card, checksum verified.

Never unpickles: weights load with safetensors, the card is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError
from .card import ModelCard

if TYPE_CHECKING:
    import torch

CARD_FILE = "model_card.json"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
#: Models shipped in the package, by short name: the default, and a lighter network for CPUs
#: (about 1.9x faster, held-out numbers within a few percent; README, "Lighter network").
#: Packaged models by short name: the default, a lighter network, and the previous default
#: (kept for comparison while the default is not better on every held-out group).
PACKAGED_MODELS = {"default": DEFAULT_MODEL_DIR, "light": Path(__file__).parent / "light",
                   "default-v2": Path(__file__).parent / "default_v2"}


def packaged_model_dir(name: str) -> Path | None:
    """Folder of a packaged model by short name (``"light"``) or model id, else None."""
    if name in PACKAGED_MODELS:
        return PACKAGED_MODELS[name]
    for folder in PACKAGED_MODELS.values():
        try:
            if read_card(folder).model_id == name:
                return folder
        except ModelError:
            continue
    return None


@dataclass
class LoadedModel:
    """A network in eval mode with its card and the folder it came from."""

    net: torch.nn.Module
    card: ModelCard
    path: Path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(net: torch.nn.Module, card: ModelCard, folder: str | Path) -> Path:
    """Write ``model.safetensors`` and ``model_card.json`` (with the weights' sha256) to folder.

    Files are written to temporaries and renamed, so a crash leaves the old model intact.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    weights = folder / card.weights_file
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
        card = card.model_copy(update={"sha256": sha256_of(Path(tmp))})
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; model files are meant to be shared
        os.replace(tmp, weights)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    write_card(folder, card)
    return folder


def write_card(folder: str | Path, card: ModelCard) -> Path:
    """Write ``card`` as ``folder/model_card.json`` (atomically); the weights are not touched."""
    path = Path(folder) / CARD_FILE
    _write_json(path, card.model_dump(mode="json"))
    return path


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_card(folder: str | Path) -> ModelCard:
    """Read and validate the model card in ``folder``."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise ModelError(f"no model card at {path}; a model folder holds {CARD_FILE} + weights")
    try:
        return ModelCard.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ModelError(f"model card {path} is invalid: {exc}") from exc


def load_model(source: str | Path | None = None, device: str | None = None) -> LoadedModel:
    """Load a model folder (default: the packaged model), verifying the weights' sha256.

    Parameters
    ----------
    source
        A folder with ``model_card.json`` and the weights; None for the packaged default.
    device
        torch device string; None picks CUDA when usable, else the CPU.
    """
    from safetensors.torch import load_file

    from .network import NORMALISATION_VERSION, build_network, select_device

    folder = Path(source) if source is not None else DEFAULT_MODEL_DIR
    card = read_card(folder)
    weights = folder / card.weights_file
    if not weights.is_file():
        raise ModelError(f"model weights {weights} are missing")
    digest = sha256_of(weights)
    if card.sha256 and digest != card.sha256:
        raise ModelError(
            f"checksum mismatch for {weights}: card says {card.sha256[:12]}..., file is "
            f"{digest[:12]}... The weights were changed or damaged; restore or retrain them."
        )
    expected = card.input.expected_channels
    if tuple(card.input.channels) != expected or (
        card.input.normalisation_version != NORMALISATION_VERSION
    ):
        raise ModelError(
            f"model {card.model_id} expects input {card.input.channels} "
            f"(normalisation v{card.input.normalisation_version}); this version provides "
            f"{list(expected)} (v{NORMALISATION_VERSION}) for its ring widths. Retrain it with "
            "`xrd-mask train`."
        )
    if card.architecture.in_channels != len(expected):
        raise ModelError(
            f"model {card.model_id}: its network takes {card.architecture.in_channels} input "
            f"channels, its card's input has {len(expected)} ({list(expected)}). The card does "
            "not describe these weights; retrain it with `xrd-mask train`.")
    dev = select_device(device)
    net = build_network(card.architecture)
    try:
        net.load_state_dict(load_file(weights))
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"weights {weights} do not fit {card.architecture}: {exc}") from exc
    import torch

    net.to(dev).to(memory_format=torch.channels_last).eval()
    return LoadedModel(net, card, folder)
