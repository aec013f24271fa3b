"""Tiled adapters for detector image files read with fabio, and for numbered series of them.

Data never collected with Bluesky (folders of TIFF, EDF, CBF, Pilatus or GE frames) served by
Tiled like any other array, so that plain Tiled clients, xarray, HTTP and
``xrd_bluesky_mask.reprocess`` read it:

- `FabioImageAdapter`: one file → a ``(y, x)`` array, or ``(frame, y, x)`` for a multi-frame
  file.
- `FabioSequenceAdapter`: a numbered series or a folder → one lazy ``(frame, y, x)`` array,
  one chunk (one file) per frame.
- Metadata of both: ``geometry`` (``{"poni": <PONI text>, "poni_file": <name>}``, when a PONI
  file lies beside the frames), ``detector_header`` (the first frame's header) and ``source``.
- `group_detector_series`: the Tiled walker that registers folders with them, and warns about
  files fabio reads but no adapter serves (`tiled_adapters.unserved`); `register_frames`
  registers a folder from Python, after checking that the server can read it
  (`tiled_adapters.server_reads`).
- MIME types and the ``adapters_by_mimetype`` a server needs: `tiled_adapters.mimetypes`;
  a ready server config: ``tiled_adapters/serve_frames.yml``.

Serve a folder (temporary catalog)::

    python -m tiled_adapters serve /data/frames --api-key secret

or with a persistent catalog::

    XRD_FRAMES_DIR=/data/frames XRD_FRAMES_CATALOG=/data/frames-catalog \\
        tiled serve config tiled_adapters/serve_frames.yml --api-key secret
    python -m tiled_adapters register http://127.0.0.1:8000/api/v1 /data/frames --api-key secret
"""

from __future__ import annotations

from pathlib import Path

from ._files import FrameReadError, FrameShapeError, NoGeometryWarning
from .image import FabioImageAdapter
from .mimetypes import (
    ADAPTERS_BY_MIMETYPE,
    MIMETYPES_BY_FILE_EXT,
    SEQUENCE_MIMETYPES,
    detect_mimetype,
)
from .series import FabioSequenceAdapter
from .walkers import group_detector_series, register_frames

__all__ = [
    "ADAPTERS_BY_MIMETYPE",
    "CONFIG",
    "FabioImageAdapter",
    "FabioSequenceAdapter",
    "FrameReadError",
    "FrameShapeError",
    "MIMETYPES_BY_FILE_EXT",
    "NoGeometryWarning",
    "SEQUENCE_MIMETYPES",
    "detect_mimetype",
    "group_detector_series",
    "register_frames",
]

#: The ready server config (``tiled serve config``), shipped with the package.
CONFIG = Path(__file__).with_name("serve_frames.yml")
