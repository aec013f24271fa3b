"""`LiveSpotView`: spot count, masked share and texture index against frame while a scan runs.

A Bluesky callback (bluesky's ``CallbackBase``, like ``LivePlot``) on the result documents the
masking callback emits (`XRDMaskCallback.subscribe`: one derived run per scan, an
``xrd_mask`` event per frame as its results are written; `xrd_bluesky_mask.bluesky.result_docs`).
Three panels share the frame axis, one line per run (the last ``max_runs`` are kept, older
ones greyed), as bluesky's LivePlot draws them::

    view = LiveSpotView()
    xrd_callback.subscribe(view)      # the beamline profile does this
    RE(count([det], 20))              # the panels grow frame by frame
    view.save("spots.png")

The documents arrive on the masking worker's thread. With a non-interactive backend (Agg) the
lines are updated there (cheap: nothing is rendered until `save`); with a GUI backend the rows
are kept and a timer of the figure's canvas, on the GUI's own thread, redraws twice a second.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bluesky.callbacks.core import CallbackBase

from .plotting import PANELS, draw_frame_panels

if TYPE_CHECKING:
    from event_model import Event, EventDescriptor, RunStart, RunStop

__all__ = ["LiveSpotView"]


class LiveSpotView(CallbackBase):
    """Spot count, masked share (%) and texture index against frame, live (module docstring).

    Parameters
    ----------
    fig
        A matplotlib figure to draw in (cleared); None: a new one.
    max_runs
        Runs kept on the panels (the newest drawn in colour).
    """

    def __init__(self, fig: Any = None, *, max_runs: int = 3) -> None:
        super().__init__()
        import matplotlib.pyplot as plt

        self.fig = fig if fig is not None else plt.figure(figsize=(6, 6))
        self.fig.clear()
        self.axes = self.fig.subplots(len(PANELS), 1, sharex=True)
        self.max_runs = max_runs
        self.rows: dict[str, list[dict[str, Any]]] = {}  # source run uid -> its rows, in order
        self._run_of: dict[str, str] = {}  # derived start uid -> source run uid
        self._descriptors: dict[str, str] = {}  # descriptor uid -> derived start uid
        self._lock = threading.Lock()
        self._dirty = False
        self._timer: Any = None
        if self._interactive():
            self._timer = self.fig.canvas.new_timer(interval=500)
            self._timer.add_callback(self._redraw_if_dirty)
            self._timer.start()
            self.fig.show()  # a window of its own, beside the session
        self.redraw()  # the empty panels, labelled

    def _interactive(self) -> bool:
        import matplotlib

        return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo",
                                                        "template")

    # -- documents -----------------------------------------------------------------------
    def start(self, doc: RunStart) -> None:
        """A derived run begins: a new line per panel."""
        source = str(doc.get("original_run_uid") or doc["uid"])
        with self._lock:
            self._run_of[doc["uid"]] = source
            self.rows[source] = []
            for old in list(self.rows)[:-self.max_runs]:
                del self.rows[old]
        self._changed()

    # event_model's stubs say the event must come back; its dispatcher passes None through as
    # the event unchanged
    def event(self, doc: Event) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        """A frame's results: a point per panel."""
        with self._lock:
            source = self._run_of.get(self._descriptors.get(doc["descriptor"], ""))
            if source is None or source not in self.rows:
                return  # a run started before this view, or one no longer shown
            self.rows[source].append(dict(doc["data"]))
        self._changed()

    def descriptor(self, doc: EventDescriptor) -> None:
        """Note which derived run the stream belongs to."""
        with self._lock:
            self._descriptors[doc["uid"]] = doc["run_start"]

    def stop(self, doc: RunStop) -> None:
        """The run's results are complete: draw them."""
        self._changed()

    # -- drawing --------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._timer is None:
            self.redraw()
        else:
            self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._dirty = False
            self.redraw()

    def redraw(self) -> None:
        """Draw the rows held now."""
        with self._lock:
            runs = {uid[:8]: list(rows) for uid, rows in self.rows.items()}
        draw_frame_panels(self.axes, runs)
        if self._timer is not None:  # a window to update; Agg renders only when saved
            self.fig.canvas.draw_idle()

    def save(self, path: str | Path) -> Path:
        """Write the panels as a PNG (redrawn first)."""
        from ..io.outputs import atomic_write

        self.redraw()
        path = Path(path)
        atomic_write(path, lambda tmp: self.fig.savefig(tmp, dpi=100, format="png"))
        return path

