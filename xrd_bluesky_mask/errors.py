"""The XRDMaskError family: each error also inherits the matching builtin.

Messages say what was expected, what arrived and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


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


class ConfigError(XRDMaskError, ValueError):
    """A bad option or setting: an unknown name, a value out of range, options that clash."""

    @classmethod
    def from_validation(cls, exc: ValidationError, options: Mapping[str, str] | None = None, *,
                        what: str = "settings") -> ConfigError:
        """The `ConfigError` for a pydantic ``ValidationError``: one line per bad field.

        ``options`` maps field names to what the user typed them as (``{"npt": "--npt"}``), so
        the message names the option, not the attribute behind it; other fields keep their
        name. Pydantic's own text (with its URL and type codes) is written for developers.
        """
        options = options or {}
        lines = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err.get("loc", ())) or what
            name = options.get(field, field)
            cause = (err.get("ctx") or {}).get("error")
            message = str(cause) if cause is not None else err.get("msg", "invalid")
            message = message.replace("Input should", "should", 1)
            shown = f"{name} {err['input']}" if "input" in err and field in options else name
            lines.append(f"{shown}: {message}")
        if len(lines) == 1:
            return cls(lines[0])
        return cls(f"invalid {what}:\n  " + "\n  ".join(lines))


class Cancelled(XRDMaskError, RuntimeError):
    """Work stopped on request (e.g. fine-tuning when its plan was aborted or failed)."""


class UnknownSource(XRDMaskError, LookupError):
    """A run uid, node path or query that names nothing reprocessable."""


class MissingExtra(XRDMaskError, ImportError):
    """An optional dependency (an install extra) that is not installed."""


class DaskConnectionError(XRDMaskError, ConnectionError):
    """A Dask scheduler that cannot be reached."""


class RunFailed(XRDMaskError, RuntimeError):
    """A run that cannot be processed at all (no usable geometry, masker or result sink);
    every frame of it fails with this."""


class JournalFull(XRDMaskError, OSError):
    """The local journal of results waiting for the result store has no room left for a
    frame (the store has been unreachable for long); that frame is recorded as failed."""
