"""Can results be written to this Tiled server? Asked once, before the first frame.

A catalog served with ``python -m tiled_adapters serve`` (``tiled serve directory``) has no
writable storage: every array written there fails with ``405: Data cannot be written``. Work
that writes results (``xrd-mask reprocess``) asks `check_writable` first, so the user gets one
message saying what to do instead of one failure per frame and a half-written result.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from ..errors import TiledAuthError

__all__ = ["check_writable"]

#: HTTP statuses that mean "not allowed to write here" rather than "something broke".
_REFUSED = (401, 403, 405)


def check_writable(client: Any, *, uri: str = "the Tiled server") -> None:
    """Write and delete a 1-byte array in a scratch container under ``client``.

    Raises
    ------
    TiledAuthError
        The server refused (HTTP 401/403/405: a read-only catalog or a key without write
        scope); nothing is left behind. Other failures propagate as they are.
    """
    from tiled.client.utils import ClientError

    key = f"xrd_mask_write_check_{secrets.token_hex(6)}"
    created = False
    try:
        scratch = client.create_container(key=key, metadata={
            "purpose": "xrd-mask write-access check; deleted at once"})
        created = True
        scratch.write_array(np.zeros(1, dtype=np.uint8), key="probe")
    except ClientError as exc:
        status = exc.response.status_code
        if status not in _REFUSED:
            raise
        detail = str(exc).splitlines()[0]
        raise TiledAuthError(
            f"{uri} does not let results be written (HTTP {status}: {detail}); nothing was "
            "written. A folder served with `python -m tiled_adapters serve` is read-only: serve "
            "it with a writable catalog instead (tiled serve config "
            "tiled_adapters/serve_frames.yml, then python -m tiled_adapters register), or pass "
            "an API key with write scope."
        ) from None
    finally:
        if created:
            client.delete_contents(key, recursive=True, external_only=False)
