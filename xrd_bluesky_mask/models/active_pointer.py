"""``<registry>/active.json``: which model version is active, and what its weights were then.

The pointer names the version, its model id and its weights' sha256 at activation, with when
and by whom (``{"version", "model_id", "sha256", "activated", "by"}``). It is replaced
atomically (a temporary file renamed over it); without it the active model is version 0. A
registered version whose weights no longer match the pointer's sha256 is refused as active
(`ActivePointer.check`).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ModelError

__all__ = ["ACTIVE_FILE", "ActivePointer"]

#: The pointer's file name in the registry folder.
ACTIVE_FILE = "active.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


class ActivePointer:
    """The active-model pointer of the registry at ``root`` (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / ACTIVE_FILE

    def read(self) -> dict[str, Any] | None:
        """The pointer, or None without one.

        Raises
        ------
        ModelError
            The file is damaged (the message says how to choose the active model again).
        """
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text())
            int(data["version"])
            return data
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"{self.path} is damaged ({exc}); choose the active model again with "
                "`xrd-mask models activate ID`"
            ) from exc

    def version(self) -> int:
        """The active version number (0 without a pointer)."""
        pointer = self.read()
        return int(pointer["version"]) if pointer else 0

    def check(self, version: int | None, sha256: str) -> None:
        """Refuse (ModelError) an active ``version`` whose weights' ``sha256`` changed since it
        was activated."""
        pointer = self.read() or {}
        if pointer.get("sha256") and pointer["sha256"] != sha256:
            raise ModelError(
                f"the active model version {version} in {self.root} has changed since it "
                "was activated (sha256 differs); activate it again if that was intended"
            )

    def point_at(self, version: int, model_id: str, sha256: str) -> None:
        """Make ``version`` the active one (call under the registry's lock)."""
        pointer = {"version": version, "model_id": model_id, "sha256": sha256,
                   "activated": _now(), "by": _user()}
        self.write(json.dumps(pointer, indent=2) + "\n")

    def text(self) -> str | None:
        """The pointer file's text as it is now (None: no pointer), for `write` to restore."""
        return self.path.read_text() if self.path.is_file() else None

    def write(self, text: str | None) -> None:
        """Replace the pointer file with ``text`` atomically; None removes it."""
        if text is None:
            self.path.unlink(missing_ok=True)
            return
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)
