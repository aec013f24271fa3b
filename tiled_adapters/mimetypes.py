"""The MIME types of detector image files, and which adapter serves each.

TIFF keeps its registered type, ``image/tiff`` (served here by `FabioImageAdapter` instead of
Tiled's TiffAdapter, to get the detector header and the PONI file as metadata). The other
formats have no registered type; these are ours:

==============  ==================  =========================================
extension       MIME type           format
==============  ==================  =========================================
.tif .tiff      image/tiff          TIFF (Pilatus TIFFs too: fabio reads their header)
.edf            image/x-edf         ESRF Data Format, single or multi-frame
.cbf            image/x-cbf         Crystallographic Binary File (Pilatus, Eiger exports)
.ge .ge1-.ge5   image/x-ge          GE amorphous-silicon detector raw frames
==============  ==================  =========================================

A numbered series of one format is ``multipart/related;type=<that type>``, following Tiled's
``multipart/related;type=image/tiff`` for TIFF sequences. The mappings hold import strings, as
a server config or ``--adapter`` flag does, so importing this module imports no adapter.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ADAPTERS_BY_MIMETYPE",
    "IMAGE_ADAPTER",
    "MIMETYPES_BY_FILE_EXT",
    "SEQUENCE_ADAPTER",
    "SEQUENCE_MIMETYPES",
    "detect_mimetype",
    "sequence_mimetype",
]

TIFF = "image/tiff"
EDF = "image/x-edf"
CBF = "image/x-cbf"
GE = "image/x-ge"

#: File extension (lower case, with the dot) → MIME type.
MIMETYPES_BY_FILE_EXT: dict[str, str] = {
    ".tif": TIFF,
    ".tiff": TIFF,
    ".edf": EDF,
    ".cbf": CBF,
    ".ge": GE,
    **{f".ge{i}": GE for i in range(1, 6)},
}

IMAGE_ADAPTER = "tiled_adapters:FabioImageAdapter"
SEQUENCE_ADAPTER = "tiled_adapters:FabioSequenceAdapter"


def sequence_mimetype(mimetype: str) -> str:
    """The MIME type of a numbered series of ``mimetype`` files."""
    return f"multipart/related;type={mimetype}"


#: Single-file MIME type → series MIME type.
SEQUENCE_MIMETYPES: dict[str, str] = {
    m: sequence_mimetype(m) for m in dict.fromkeys(MIMETYPES_BY_FILE_EXT.values())
}

#: MIME type → adapter import string (the ``adapters_by_mimetype`` of a Tiled catalog).
ADAPTERS_BY_MIMETYPE: dict[str, str] = {
    **dict.fromkeys(SEQUENCE_MIMETYPES, IMAGE_ADAPTER),
    **dict.fromkeys(SEQUENCE_MIMETYPES.values(), SEQUENCE_ADAPTER),
}


def detect_mimetype(path: Path, mimetype: str | None) -> str | None:
    """Tiled's mimetype detection hook (``--mimetype-hook tiled_adapters:detect_mimetype``):
    the detector type of a file by its extension, else what Tiled guessed."""
    p = Path(path)
    if p.is_dir():
        return mimetype
    return MIMETYPES_BY_FILE_EXT.get(p.suffix.lower(), mimetype)
