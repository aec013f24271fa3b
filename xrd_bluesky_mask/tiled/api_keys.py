"""The API key kept with an embedded server's catalog folder, and what Tiled accepts as a key.

One key per catalog folder (`kept_api_key`: the beamline profile's embedded server and
``xrd-mask serve``), so that what was printed once keeps working in later sessions.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

__all__ = ["API_KEY_FILE", "check_api_key", "kept_api_key"]

log = logging.getLogger(__name__)


#: The file in an embedded server's catalog folder that keeps its API key across sessions.
API_KEY_FILE = "api_key"


def kept_api_key(directory: str | Path, *, create: bool = True) -> str | None:
    """The API key kept with the catalog in ``directory``, made on first use.

    The beamline profile's embedded server and ``xrd-mask serve`` use it, so that the
    ``export TILED_API_KEY=...`` line and the commands printed once keep working in later
    sessions. The key is ``directory/api_key`` (`API_KEY_FILE`): 32 random hex digits, created
    readable and writable by its owner only (mode 0600); a kept file that others can read is
    made private again, with a warning.

    Parameters
    ----------
    directory
        The catalog folder (created if missing when a key is made).
    create
        Make (and keep) a new key when there is none; False returns None instead.

    Returns
    -------
    str or None
        The key; None when there is none and ``create`` is False.

    Raises
    ------
    ValueError
        The kept file holds no valid key (empty, or characters Tiled refuses).
    """
    path = Path(directory) / API_KEY_FILE
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(16)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another process: use that one
            return kept_api_key(directory, create=False)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        log.info("new API key kept in %s", path)
        return key
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o600)
        log.warning("%s was readable by others (mode %o); it is now private (0600)", path, mode)
    try:
        return check_api_key(path.read_text().strip())
    except ValueError as exc:
        raise ValueError(f"{path} holds no valid API key ({exc}); delete the file to make a "
                         "new key") from None


def check_api_key(api_key: str) -> str:
    """``api_key`` if Tiled accepts it (non-empty, ASCII letters and digits); ValueError if not."""
    if not api_key or not api_key.isascii() or not api_key.isalnum():
        raise ValueError(
            f"the API key must be non-empty and alphanumeric (letters and digits only), got "
            f"{api_key!r}: Tiled refuses to start with other characters. Use e.g. "
            "secrets.token_hex(16)."
        )
    return api_key
