"""Maskers: the Masker protocol, the U-Net and the classical ring-outlier baseline.

Maskers are discovered through the ``xrd_bluesky_mask.maskers`` entry-point group (the
built-in ones are registered there too, in pyproject.toml), so a beamline package can add its
own and select it by name (``--masker NAME``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ..errors import ConfigError
from ..protocols import Masker, MaskResult


def available_maskers() -> dict[str, str]:
    """Masker names and their ``module:Class`` import paths (built-in and plugins)."""
    return {ep.name: ep.value for ep in entry_points(group="xrd_bluesky_mask.maskers")}


def get_masker(masker: str | Masker | None = None, **kwargs: Any) -> Masker:
    """A masker instance from a name (``"unet"``, ``"classical"``, a plugin) or an instance.

    None gives the U-Net with the packaged default model. ``kwargs`` go to the constructor.
    An unknown name is a `ConfigError` (a `ValueError`) listing the known ones.
    """
    if masker is None:
        masker = "unet"
    if not isinstance(masker, str):
        if not isinstance(masker, Masker):
            raise TypeError(
                f"{type(masker).__name__} is not a Masker: it needs a `name`, "
                "`predict(frame, geometry) -> MaskResult` and `settings()`."
            )
        return masker
    known = available_maskers()
    if masker not in known:
        raise ConfigError(f"unknown masker {masker!r}; known: {', '.join(sorted(known))}")
    import importlib

    module, _, cls = known[masker].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["MaskResult", "Masker", "available_maskers", "get_masker"]
