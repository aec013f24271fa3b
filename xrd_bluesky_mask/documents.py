"""Where a Bluesky run keeps its frames and its geometry, read from its documents.

The live callback, reprocessing and annotations all find a run's image data key in a stream
descriptor and its PONI in the start metadata or a device's configuration the same way.
Plain dict logic: no bluesky, tiled or pyFAI import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PONI_KEY", "find_image_field", "find_poni", "start_frame_shape"]

#: Start-document key holding the PONI text.
PONI_KEY = "xrd_mask_poni"


def find_image_field(data_keys: dict[str, Any], field: str | None = None) -> str | None:
    """The image data key of a descriptor: ``field`` if present, else the largest 2D/3D key.

    A 3D key qualifies when its leading axis is 1 (ophyd-async's frames-per-event axis).
    """
    if field is not None:
        return field if field in data_keys else None
    best, best_size = None, 0
    for key, dk in data_keys.items():
        shape = [int(n) for n in (dk.get("shape") or []) if n is not None]
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2 or min(shape) < 2:
            continue
        size = shape[0] * shape[1]
        if size > best_size:
            best, best_size = key, size
    return best


def find_poni(start: Mapping[str, Any], descriptor: Mapping[str, Any],
              given: str | None = None) -> tuple[str | None, str]:
    """PONI text and where it came from: ``given`` > start metadata > device configuration."""
    if given:
        return given, "callback"
    if isinstance(start.get(PONI_KEY), str):
        return start[PONI_KEY], f"start:{PONI_KEY}"
    for device, conf in (descriptor.get("configuration") or {}).items():
        for key, value in (conf.get("data") or {}).items():
            if key.endswith("poni") and isinstance(value, str) and "Distance" in value:
                return value, f"configuration:{device}.{key}"
    return None, ""


def start_frame_shape(start: Mapping[str, Any]) -> tuple[int, int] | None:
    """The frame ``(rows, cols)`` a start document names (``xrd_mask_detector.shape_px``), or
    None (the PONI's detector then gives it)."""
    detector = start.get("xrd_mask_detector")
    shape = detector.get("shape_px") if isinstance(detector, dict) else None
    if isinstance(shape, (list, tuple)) and len(shape) >= 2:
        return int(shape[-2]), int(shape[-1])
    return None
