"""The masking results as Bluesky documents: one derived run per source run, one event per frame.

`ResultDocuments` listens to the `Worker` (`Worker.add_listener`) and, for every source run
whose frames it writes, emits the documents of a derived run (event-model's `compose_run`,
as bluesky's ``LiveDispatcher`` does for derived streams): a start document naming its parent
(``original_run_uid``), a descriptor of the stream ``xrd_mask`` with the frame summary's
columns as data keys (`xrd_bluesky_mask.spots.summary.SUMMARY_COLUMNS`: ``frame``,
``spot_count``, ``masked_pct`` in %, ``texture_index``, ``similarity_to_previous``), an event
per frame as its results are written, and a stop document when the run is closed (its exit
status ``success`` unless the results are ``failed`` or ``aborted``).

Any Bluesky callback can consume them: ``bluesky.callbacks.LivePlot("spot_count", x="frame")``
or the profile's `~xrd_bluesky_mask.apps.live_view.LiveSpotView`. They are emitted on the
worker's write thread, in frame-write order (frames may be written out of index order when a
run is caught up with). ``similarity_to_previous`` is NaN here (it needs the previous frame's
stored pattern: the run's ``frames`` table has it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DATA_KEYS", "STREAM", "ResultDocuments"]

log = logging.getLogger(__name__)

#: Name of the derived stream.
STREAM = "xrd_mask"
#: Its data keys (the frame summary's columns) with their dtype and units.
DATA_KEYS: dict[str, dict[str, Any]] = {
    "frame": {"dtype": "integer", "shape": [], "source": "xrd-mask", "units": ""},
    "spot_count": {"dtype": "integer", "shape": [], "source": "xrd-mask", "units": ""},
    "masked_pct": {"dtype": "number", "shape": [], "source": "xrd-mask", "units": "%"},
    "texture_index": {"dtype": "number", "shape": [], "source": "xrd-mask", "units": ""},
    "similarity_to_previous": {"dtype": "number", "shape": [], "source": "xrd-mask",
                               "units": ""},
}


@dataclass
class _Derived:
    bundle: Any  # event_model ComposeRunBundle
    descriptor: Any  # ComposeDescriptorBundle
    n: int = 0


class ResultDocuments:
    """Turns `Worker` notifications into documents for subscribed Bluesky callbacks."""

    def __init__(self) -> None:
        self._callbacks: dict[int, Callable[[str, dict[str, Any]], Any]] = {}
        self._runs: dict[str, _Derived] = {}
        self._token = 0
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[[str, dict[str, Any]], Any]) -> int:
        """Send every document to ``callback(name, doc)``; returns a token for `unsubscribe`."""
        with self._lock:
            self._token += 1
            self._callbacks[self._token] = callback
            return self._token

    def unsubscribe(self, token: int) -> None:
        """Stop sending documents to the callback ``token`` names."""
        with self._lock:
            self._callbacks.pop(token, None)

    def _emit(self, name: str, doc: dict[str, Any]) -> None:
        with self._lock:
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            try:
                callback(name, doc)
            except Exception:  # a plot must never stop the masking
                log.exception("xrd-mask: a result-document callback failed on %s", name)

    def __call__(self, run_uid: str, index: int | None, payload: dict[str, Any]) -> None:
        """A `Worker` listener: a frame written (``index``, its summary row) or the run
        closed (``index`` None, ``{"status": ...}``)."""
        if index is None:
            derived = self._runs.pop(run_uid, None)
            if derived is not None:
                status = payload.get("status")
                exit_status = "fail" if status == "failed" else \
                    "abort" if status == "aborted" else "success"
                self._emit("stop", dict(derived.bundle.compose_stop(
                    exit_status=exit_status, reason=str(status or ""))))
            return
        derived = self._runs.get(run_uid) or self._start(run_uid)
        data = {key: _value(payload.get(key), DATA_KEYS[key]["dtype"]) for key in DATA_KEYS}
        data["frame"] = int(index)
        now = time.time()
        derived.n += 1
        self._emit("event", dict(derived.descriptor.compose_event(
            data=data, timestamps=dict.fromkeys(data, now), seq_num=derived.n)))

    def _start(self, run_uid: str) -> _Derived:
        from event_model import compose_run

        bundle = compose_run(metadata={
            "original_run_uid": run_uid, "plan_name": "xrd_mask",
            "hints": {"dimensions": [[["frame"], STREAM]]}})
        descriptor = bundle.compose_descriptor(
            name=STREAM, data_keys=DATA_KEYS,
            hints={STREAM: {"fields": ["spot_count", "masked_pct", "texture_index"]}})
        derived = self._runs[run_uid] = _Derived(bundle, descriptor)
        self._emit("start", dict(bundle.start_doc))
        self._emit("descriptor", dict(descriptor.descriptor_doc))
        return derived


def _value(value: Any, dtype: str) -> Any:
    """A summary value as its data key's type (NaN for a missing number, -1 for a count)."""
    if dtype == "integer":
        return int(value) if value is not None else -1
    return float(value) if value is not None else float("nan")
