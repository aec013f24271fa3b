"""The XRDMaskError family: each error also inherits the matching builtin.

Messages say what was expected, what arrived and what to do.
"""

from __future__ import annotations


class XRDMaskError(Exception):
    """Base class of every error this package raises on purpose."""


class GeometryError(XRDMaskError, ValueError):
    """A PONI file or geometry that cannot be used (missing, unparsable, wrong shape)."""


class FrameError(XRDMaskError, ValueError):
    """A detector frame that cannot be masked (wrong dimensions, empty, all zero)."""


class InputFileError(XRDMaskError, OSError):
    """An input file that does not exist or cannot be read."""


class ModelError(XRDMaskError, RuntimeError):
    """A model checkpoint or model card that cannot be loaded or fails its checksum."""


class AnnotationError(XRDMaskError, ValueError):
    """Human-checked masks that cannot be used: missing, mis-shaped, or too few labels."""


class FrameUnavailable(XRDMaskError, TimeoutError):
    """A frame that did not become readable (e.g. in Tiled) within the allowed time."""


class TiledConnectionError(XRDMaskError, ConnectionError):
    """A Tiled server that cannot be reached or refuses the request."""


class TiledAuthError(TiledConnectionError, PermissionError):
    """A Tiled server that refused the API key (HTTP 401) or needs one that was not given."""
