"""`FabioImageAdapter`: one detector image file (TIFF, EDF, CBF, Pilatus, GE, ...) in Tiled.

A file holding one frame is a 2D array ``(y, x)``; a multi-frame file (multi-frame EDF, a GE
file of several exposures) is ``(frame, y, x)`` with one chunk per frame. Shape and dtype come
from the header when it says them (else from the first frame); the header and the PONI file
beside the image are the node's metadata (see `image_metadata`).
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import numpy as np
from ndindex import ndindex
from tiled.adapters.core import Adapter
from tiled.adapters.utils import init_adapter_from_catalog
from tiled.catalog.orm import Node
from tiled.ndslice import NDSlice
from tiled.structures.array import ArrayStructure, BuiltinDtype
from tiled.structures.core import Spec, StructureFamily
from tiled.structures.data_source import DataSource
from tiled.type_aliases import JSON
from tiled.utils import path_from_uri

from ._files import (
    FrameInfo,
    FrameShapeError,
    find_poni,
    geometry_metadata,
    probe,
    read_pixels,
)

__all__ = ["FabioImageAdapter", "image_metadata"]


def image_metadata(info: FrameInfo, geometry: dict[str, str] | None) -> dict[str, Any]:
    """Metadata of one image file.

    ``geometry`` (``{"poni", "poni_file"}``, only when a PONI file was found),
    ``detector_header`` (the header, JSON-safe) and ``source`` (``format``, ``file``,
    ``directory``, ``frames``, ``frame_shape_px``).
    """
    md: dict[str, Any] = {}
    if geometry:
        md["geometry"] = geometry
    md["detector_header"] = info.header
    md["source"] = {"format": info.format, "file": info.path.name,
                    "directory": str(info.path.parent), "frames": info.nframes,
                    "frame_shape_px": list(info.shape)}
    return md


class FabioImageAdapter(Adapter[ArrayStructure]):
    """Serve one detector image file read with fabio.

    Parameters
    ----------
    data_uri
        ``file://`` URI of the image.
    structure
        Known structure (from the catalog); None: read the header.
    metadata
        Known metadata (from the catalog); None: header and PONI file beside the image.
    specs
        Tiled specs of the node.

    Examples
    --------
    >>> FabioImageAdapter.from_uris("file:///data/calib/LaB6_0001.edf")  # doctest: +SKIP
    """

    structure_family = StructureFamily.array

    def __init__(
        self,
        data_uri: str,
        structure: ArrayStructure | None = None,
        *,
        metadata: JSON | None = None,
        specs: list[Spec] | None = None,
    ) -> None:
        self._path = Path(path_from_uri(data_uri))
        if structure is None or metadata is None:
            info = probe(self._path, full=True)
            if structure is None:
                structure = _structure_of(info)
            if metadata is None:
                poni = find_poni(self._path.parent, self._path.stem,
                                 what=f"image {self._path.name!r}")
                metadata = image_metadata(info, geometry_metadata(poni))
        super().__init__(structure, metadata=metadata, specs=specs)

    @classmethod
    def from_uris(cls, data_uri: str, **kwargs: Any) -> FabioImageAdapter:
        """The adapter of one file (what ``tiled register`` calls)."""
        return cls(data_uri)

    @classmethod
    def from_catalog(cls, data_source: DataSource[ArrayStructure], node: Node, /,
                     **kwargs: Any) -> FabioImageAdapter:
        """The adapter of a registered node (structure and metadata from the catalog)."""
        return init_adapter_from_catalog(cls, data_source, node, **kwargs)

    @property
    def path(self) -> Path:
        """The image file."""
        return self._path

    def _frame(self, index: int | None) -> np.ndarray:
        shape = self._structure.shape
        frame = read_pixels(self._path, index)
        if frame.shape != tuple(shape[-2:]):
            raise FrameShapeError(
                f"{str(self._path)!r} now holds a frame of shape {frame.shape}, not the "
                f"{tuple(shape[-2:])} it was registered with; register the file again."
            )
        return frame.astype(self._structure.data_type.to_numpy_dtype(), copy=False)

    def read(self, slice: NDSlice | None = None) -> np.ndarray:
        """The image (or the selected part of it), reading only the frames selected."""
        shape = tuple(self._structure.shape)
        if len(shape) == 2:
            arr = self._frame(None)
            return arr[slice] if slice else arr
        key = NDSlice(slice).expand_for_shape(shape) if slice else NDSlice(
            *(builtins.slice(None),) * len(shape))
        first, rest = key[0], tuple(key[1:])
        if isinstance(first, (int, np.integer)):
            return self._frame(int(first))[rest]
        indices = np.arange(shape[0])[first]
        if indices.size == 0:
            dtype = self._structure.data_type.to_numpy_dtype()
            return np.empty((0, *ndindex(rest).newshape(shape[1:])), dtype=dtype)
        return np.stack([self._frame(int(i))[rest] for i in indices])

    def read_block(self, block: tuple[int, ...], slice: NDSlice | None = None) -> np.ndarray:
        """Block ``block``: the whole image (2D), or one frame ``(1, y, x)`` of a stack."""
        shape = self._structure.shape
        n_blocks = shape[0] if len(shape) == 3 else 1
        if any(block[1:]) or not 0 <= block[0] < n_blocks:
            raise IndexError(block)
        arr = self._frame(None) if len(shape) == 2 else self._frame(int(block[0]))[None]
        return arr[slice] if slice else arr


def _structure_of(info: FrameInfo) -> ArrayStructure:
    """(y, x) for one frame, (frame, y, x) chunked per frame for several."""
    rows, cols = info.shape
    dtype = info.dtype
    if dtype is None:  # TIFF and CBF headers do not always say: read the first frame
        dtype = read_pixels(info.path, 0 if info.nframes > 1 else None).dtype
    if info.nframes > 1:
        n = info.nframes
        return ArrayStructure(shape=(n, rows, cols), chunks=((1,) * n, (rows,), (cols,)),
                              data_type=BuiltinDtype.from_numpy_dtype(np.dtype(dtype)),
                              dims=("frame", "y", "x"))
    return ArrayStructure(shape=(rows, cols), chunks=((rows,), (cols,)),
                          data_type=BuiltinDtype.from_numpy_dtype(np.dtype(dtype)),
                          dims=("y", "x"))

