"""The model registry: numbered model versions with cards, and which one is active.

A local directory (default ``models`` in the user data folder of `platformdirs`: on Linux
``$XDG_DATA_HOME/xrd-bluesky-mask/models``, i.e. ``~/.local/share/xrd-bluesky-mask/models``;
override with the ``XRD_MASK_MODELS`` environment variable or the ``root`` argument)::

    <root>/
        versions/v1/model_card.json    a model folder (card + model.safetensors), version 1
        versions/v2/...
        active.json                    {"version", "model_id", "sha256", "activated", "by"}

Version 0 is the model packaged with xrd-bluesky-mask (``models/default``); it is never copied.
The other packaged models (``light``, see `PACKAGED_MODELS`) are listed and found by short name
or model id beside the versions, without a number; to make one active, register it as a version.
Without ``active.json`` the active model is version 0. The active model is what
``get_masker("unet")``, ``predict_mask`` and `XRDMaskCallback` use when no model is given.

A version, once written, is never overwritten: `ModelRegistry.register` takes the next free
number (under a `filelock.FileLock` on ``<root>/.lock``, shared with other processes) and
refuses a model id or weights already registered. Loading verifies the weights' sha256
(`xrd_bluesky_mask.models.store.load_model`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock

from ..errors import ModelError
from .active_pointer import ActivePointer
from .card import ModelCard
from .store import (
    CARD_FILE,
    DEFAULT_MODEL_DIR,
    PACKAGED_MODELS,
    LoadedModel,
    load_model,
    read_card,
    sha256_of,
)

__all__ = [
    "ENV_VAR",
    "ModelEntry",
    "ModelRegistry",
    "active_model_dir",
    "default_registry_dir",
]

log = logging.getLogger(__name__)

#: Environment variable naming the registry directory.
ENV_VAR = "XRD_MASK_MODELS"
_VERSION_DIR = re.compile(r"^v(\d+)$")


def default_registry_dir() -> Path:
    """``$XRD_MASK_MODELS``, else ``models`` in the user data folder (`platformdirs`; on Linux
    ``$XDG_DATA_HOME/xrd-bluesky-mask``, XDG default ``~/.local/share``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    # appauthor=False: no <author> level on Windows
    return platformdirs.user_data_path("xrd-bluesky-mask", appauthor=False) / "models"


@dataclass(frozen=True)
class ModelEntry:
    """One registered model version.

    Attributes
    ----------
    version
        Its number (0 = the packaged default); None for the other packaged models.
    path
        The model folder (card + weights).
    card
        Its model card.
    active
        Whether it is the active model.
    name
        The short name of a packaged model (``"default"``, ``"light"``); None for a
        registered version.
    """

    version: int | None
    path: Path
    card: ModelCard
    active: bool = False
    name: str | None = None

    @property
    def label(self) -> str:
        """How ``xrd-mask models`` shows and takes it: the version number, else the name."""
        return str(self.version) if self.version is not None else str(self.name)

    @property
    def model_id(self) -> str:
        """The card's model id."""
        return self.card.model_id

    @property
    def sha256(self) -> str:
        """The weights' sha256 recorded in the card."""
        return self.card.sha256


class ModelRegistry:
    """Numbered model versions in a directory (see the module docstring).

    Parameters
    ----------
    root
        Registry directory; None: `default_registry_dir`. Nothing is written until a model is
        registered or activated.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_registry_dir()
        self._txn: list[int] | None = None

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    @property
    def versions_dir(self) -> Path:
        """Where version folders live."""
        return self.root / "versions"

    # -- reading --------------------------------------------------------------------------
    @property
    def pointer(self) -> ActivePointer:
        """The active-model pointer (``active.json``)."""
        return ActivePointer(self.root)

    def _active_version(self) -> int:
        return self.pointer.version()

    def _folder(self, version: int) -> Path:
        return DEFAULT_MODEL_DIR if version == 0 else self.versions_dir / f"v{version}"

    def _numbers(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        found = (_VERSION_DIR.match(p.name) for p in self.versions_dir.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def _entry(self, version: int, active: int) -> ModelEntry:
        folder = self._folder(version)
        card = read_card(folder)
        if version and card.version not in (None, version):
            raise ModelError(f"{folder} holds a card for version {card.version}, not {version}")
        return ModelEntry(version, folder, card, version == active,
                          name="default" if version == 0 else None)

    def entries(self) -> list[ModelEntry]:
        """Every readable version, oldest first (version 0 first); damaged ones are logged.
        The other packaged models are in `packaged`."""
        active = self._active_version()
        out = [self._entry(0, active)]
        for n in self._numbers():
            try:
                out.append(self._entry(n, active))
            except ModelError as exc:
                log.warning("model registry %s: skipping version %d: %s", self.root, n, exc)
        return out

    def packaged(self) -> list[ModelEntry]:
        """The packaged models other than version 0 (e.g. ``light``), never active; version
        None. A damaged one is logged and left out."""
        out = []
        for name, folder in PACKAGED_MODELS.items():
            if folder == DEFAULT_MODEL_DIR:
                continue
            try:
                out.append(ModelEntry(None, folder, read_card(folder), name=name))
            except ModelError as exc:
                log.warning("packaged model %r (%s) cannot be read: %s", name, folder, exc)
        return out

    def get(self, ref: int | str | None = "active") -> ModelEntry:
        """A version by number (``3``, ``"3"``, ``"v3"``), model id, ``"default"`` (0) or
        ``"active"``/None, or another packaged model by short name (``"light"``) or model id.

        Raises
        ------
        ModelError
            Unknown reference (the message lists the registered versions), or a damaged one.
        """
        active = self._active_version()
        if ref is None or ref == "active":
            version: int | None = active
        elif ref == "default":
            version = 0
        elif isinstance(ref, int) and not isinstance(ref, bool):
            version = ref
        elif isinstance(ref, str) and re.fullmatch(r"v?\d+", ref):
            version = int(ref.lstrip("v"))
        else:
            version = None
        if version is not None:
            if version != 0 and version not in self._numbers():
                if version == active:
                    raise ModelError(
                        f"the active model, version {version}, is missing from {self.root}; "
                        "choose another with `xrd-mask models activate ID`"
                    )
                raise ModelError(f"no model version {version} in {self.root}; {self._known()}")
            entry = self._entry(version, active)
            if entry.active and version != 0:
                self.pointer.check(entry.version, entry.sha256)
            return entry
        for entry in self.entries():
            if entry.model_id == ref:
                if entry.active and entry.version != 0:
                    self.pointer.check(entry.version, entry.sha256)
                return entry
        for entry in self.packaged():
            if ref in (entry.name, entry.model_id):
                return entry
        raise ModelError(f"no model {ref!r} in {self.root}; {self._known()}")

    def _known(self) -> str:
        rows = ", ".join(f"{e.version} ({e.model_id})" for e in self.entries())
        packaged = ", ".join(f"{e.name} ({e.model_id})" for e in self.packaged())
        return (f"registered versions: {rows}"
                + (f"; packaged models: {packaged}" if packaged else "")
                + ". See `xrd-mask models list`.")

    def active(self) -> ModelEntry:
        """The active model (version 0 unless another was activated)."""
        return self.get("active")

    def load(self, ref: int | str | None = "active", device: str | None = None) -> LoadedModel:
        """Load a version (checksum verified); see `get` for ``ref``."""
        return load_model(self.get(ref).path, device)

    # -- writing --------------------------------------------------------------------------
    def _locked(self) -> FileLock:
        """The registry's write lock (between processes too); creates the registry folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".lock")

    def register(self, folder: str | Path, *, model_id: str | None = None,
                 version: int | None = None, updates: dict[str, Any] | None = None) -> ModelEntry:
        """Copy a model folder into the registry as a new version.

        Parameters
        ----------
        folder
            A model folder (``model_card.json`` + weights), e.g. ``xrd-mask train``'s ``best/``.
        model_id
            Id of the new version; may contain ``{version}`` (e.g. ``"xrdmask-r{version}"``).
            None keeps the card's.
        version
            Number to use; None takes the next free one. An existing number is refused.
        updates
            Other card fields to set (e.g. ``metrics``, ``runs``, ``description``).

        Raises
        ------
        ModelError
            Weights not matching their card, a version number, model id or weights already in
            the registry (versions are never overwritten).
        """
        src = Path(folder)
        card = read_card(src)
        weights = src / card.weights_file
        if not weights.is_file():
            raise ModelError(f"model weights {weights} are missing; nothing registered")
        digest = sha256_of(weights)
        if card.sha256 and card.sha256 != digest:
            raise ModelError(f"checksum mismatch for {weights}; refusing to register it")
        with self._locked():
            entries = self.entries()
            numbers = [e.version for e in entries if e.version is not None]
            n = max(numbers) + 1 if version is None else int(version)
            target = self._folder(n)
            if n < 1 or n in numbers or target.exists():
                raise ModelError(
                    f"model version {n} already exists in {self.root} (version 0 is the packaged "
                    "model); versions are never overwritten. Register without version= to take "
                    "the next free number."
                )
            new_id = (model_id or card.model_id).replace("{version}", str(n))
            for e in entries:
                if e.model_id == new_id:
                    raise ModelError(f"model id {new_id!r} is already version {e.version} in "
                                     f"{self.root}; pass another model_id")
                if e.sha256 == digest:
                    raise ModelError(f"these weights are already registered as version "
                                     f"{e.version} ({e.model_id})")
            fields = {**card.model_dump(mode="json"), **(updates or {}),
                      "model_id": new_id, "version": n, "sha256": digest}
            try:
                new_card = ModelCard.model_validate(fields)
            except ValueError as exc:
                raise ModelError(f"card updates are invalid: {exc}") from exc
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.versions_dir))
            try:
                shutil.copyfile(weights, tmp / new_card.weights_file)
                if sha256_of(tmp / new_card.weights_file) != digest:
                    raise ModelError(f"copying {weights} changed its bytes; nothing registered")
                (tmp / CARD_FILE).write_text(new_card.model_dump_json(indent=2) + "\n")
                for path in (tmp, *tmp.iterdir()):
                    os.chmod(path, 0o755 if path.is_dir() else 0o644)
                os.rename(tmp, target)  # target does not exist (checked under the lock)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if self._txn is not None:
                self._txn.append(n)
        log.info("registered %s as version %d in %s", new_id, n, self.root)
        return self._entry(n, self._active_version())

    def activate(self, ref: int | str) -> ModelEntry:
        """Make a version the active model (its weights' checksum is verified first).

        Raises
        ------
        ModelError
            Unknown ``ref``, a checksum mismatch, or a packaged model that is not a version
            (the message gives the command that registers it as one).
        """
        entry = self.get(ref)
        if entry.version is None:
            raise ModelError(
                f"the packaged model {entry.name!r} ({entry.model_id}) is not a registry version "
                "and cannot be activated as it is; register it as one and activate that: "
                f"xrd-mask models register {entry.path} --activate"
            )
        digest = sha256_of(entry.path / entry.card.weights_file)
        if entry.sha256 and digest != entry.sha256:
            raise ModelError(f"checksum mismatch for version {entry.version} ({entry.path}); "
                             "not activated")
        with self._locked():
            self.pointer.point_at(entry.version, entry.model_id, digest)
        log.info("active model: version %d (%s)", entry.version, entry.model_id)
        return ModelEntry(entry.version, entry.path, entry.card, True)

    def remove(self, ref: int | str) -> None:
        """Delete a version (not version 0, not the active one), e.g. to undo a registration."""
        entry = self.get(ref)
        if entry.version is None:
            raise ModelError(f"{entry.name!r} ({entry.model_id}) is a packaged model; only "
                             "registered versions can be removed")
        if entry.version == 0 or entry.active:
            raise ModelError(f"version {entry.version} ({entry.model_id}) is "
                             f"{'the packaged model' if entry.version == 0 else 'active'}; "
                             "activate another version first")
        with self._locked():
            shutil.rmtree(entry.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[ModelRegistry]:
        """Undo the registrations and activation made inside the block if it raises.

        Used by the ``retrain`` plan so that an abort after registering leaves the registry as
        it was.
        """
        before = self.pointer.text()
        self._txn = []
        try:
            yield self
        except BaseException:
            with self._locked():
                self.pointer.write(before)
                for n in self._txn:
                    shutil.rmtree(self._folder(n), ignore_errors=True)
            log.info("model registry %s: rolled back versions %s", self.root, self._txn)
            raise
        finally:
            self._txn = None


def active_model_dir(root: str | Path | None = None) -> Path:
    """Folder of the active model of the registry at ``root`` (default registry if None)."""
    return ModelRegistry(root).active().path
