"""Plain numbers and strings as a Bluesky readable, emitted as one event of a stream.

The retraining plan records each epoch (``primary``) and its verdict (``result``) this way:
`Values` describes its keys with the given dtypes, `emit` sets them and reads them into an
event after a checkpoint (a pause re-emits it once).
"""

from __future__ import annotations

import time
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.protocols import Reading
from bluesky.utils import MsgGenerator
from event_model.documents.event_descriptor import DataKey, Dtype

__all__ = ["Values", "emit"]


class Values:
    """A Bluesky readable of plain numbers/strings: ``set`` them, then read them as an event."""

    def __init__(self, name: str, keys: dict[str, Dtype]) -> None:
        self.name, self.parent, self._keys = name, None, keys
        self._values: dict[str, Any] = {}

    def set(self, values: dict[str, Any]) -> None:
        """The values the next read returns (keys not given read None)."""
        self._values = {k: values.get(k) for k in self._keys}

    def describe(self) -> dict[str, DataKey]:
        """Each key's data key: its dtype, a scalar."""
        return {k: {"source": f"xrd-mask:{self.name}", "dtype": dtype, "shape": []}
                for k, dtype in self._keys.items()}

    def read(self) -> dict[str, Reading[Any]]:
        """The values set, timestamped now."""
        now = time.time()
        return {k: {"value": self._values.get(k), "timestamp": now} for k in self._keys}


def emit(readable: Values, values: dict[str, Any], stream: str) -> MsgGenerator:
    """One event of ``values`` in ``stream`` (after a checkpoint: a pause re-emits it once)."""
    readable.set(values)
    yield from bps.checkpoint()
    yield from bps.create(stream)
    yield from bps.read(readable)
    yield from bps.save()
