"""Provenance of a frame's results: what made them, recorded beside every mask and pattern.

`provenance` builds the metadata of a run's results (source, masker settings with model id and
checksum, PONI, integration settings, package versions, progress); `settings_id` hashes what
makes two results of a source the same version, so reprocessing with the same settings resumes
the same results and other settings start a new version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
import time
from typing import Any

from .protocols import MaskCode

#: 2: result versions (``result_version``, ``settings_id``, ``source_kind``, ``source_path``).
SCHEMA_VERSION = 2
#: Masker settings that do not change results, left out of `settings_id`.
VOLATILE_MASKER_KEYS = frozenset({"device"})

_PACKAGES = ("tiled", "bluesky", "bluesky-tiled-plugins", "event-model", "pyFAI", "numpy")


def package_versions() -> dict[str, str]:
    """Versions of this package and of the libraries results depend on (torch if loaded)."""
    from . import __version__

    versions = {"xrd_bluesky_mask": __version__}
    names = list(_PACKAGES) + (["torch"] if "torch" in sys.modules else [])
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _canonical(value: Any) -> Any:
    """JSON-stable form: sorted dicts, lists for tuples, integral floats as ints."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _poni_lines(poni: str | None) -> list[str]:
    """PONI text without comments, blank lines and surrounding spaces."""
    lines = (line.strip() for line in (poni or "").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def settings_id(metadata: dict[str, Any]) -> str:
    """What makes two results of a source the same version (16 hex digits).

    A hash of the masker settings (model id and sha256 included; ``device`` left out: the same
    model on CPU or GPU is the same result), the PONI (comments and blank lines ignored), the
    integration settings, stream and field, read from provenance ``metadata``. A stored
    ``settings_id`` is returned as is.
    """
    if isinstance(metadata.get("settings_id"), str):
        return metadata["settings_id"]
    masker = {k: v for k, v in (metadata.get("masker") or {}).items()
              if k not in VOLATILE_MASKER_KEYS}
    identity = {"masker": masker, "poni": _poni_lines(metadata.get("poni")),
                "integration": metadata.get("integration") or {},
                "stream": metadata.get("stream") or "", "field": metadata.get("field") or ""}
    text = json.dumps(_canonical(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(
    source_uid: str,
    *,
    stream: str,
    field: str,
    masker_settings: dict[str, Any],
    poni: str,
    integration: dict[str, Any],
    frames_expected: int | None = None,
    frame_shape: tuple[int, int] | None = None,
    source_kind: str = "bluesky_run",
    source_path: str | None = None,
) -> dict[str, Any]:
    """Metadata of a derived container (JSON-able).

    Keys: ``schema_version``, ``source_uid`` (run uid, or the array node's path),
    ``source_kind`` (``"bluesky_run"`` or ``"array_node"``), ``source_path`` (path of the frames
    from the server root, when known), ``stream``, ``field``, ``masker`` (its ``settings()``),
    ``model_id`` and ``model_sha256`` (None for model-free maskers), ``poni`` (PONI text),
    ``integration`` (`IntegrationSettings` as a dict), ``settings_id`` (see `settings_id`),
    ``versions``, ``frames_expected``, ``frame_shape_px``, ``mask_codes``, ``frames_done``,
    ``n_frames_done``, ``status``, ``errors``, ``created`` and ``updated`` (Unix seconds). The
    sink adds ``result_version``.
    """
    now = time.time()
    md = {
        "schema_version": SCHEMA_VERSION,
        "source_uid": source_uid,
        "source_kind": source_kind,
        "source_path": source_path,
        "stream": stream,
        "field": field,
        "masker": masker_settings,
        "model_id": masker_settings.get("model_id"),
        "model_sha256": masker_settings.get("model_sha256"),
        "poni": poni,
        "integration": integration,
        "versions": package_versions(),
        "frames_expected": frames_expected,
        "frame_shape_px": list(frame_shape) if frame_shape else None,
        "mask_codes": {str(k): v for k, v in MaskCode.result_codes().items()},
        "frames_done": [],
        "n_frames_done": 0,
        "status": "running",
        "errors": {},
        "created": now,
        "updated": now,
    }
    md["settings_id"] = settings_id(md)
    return md
