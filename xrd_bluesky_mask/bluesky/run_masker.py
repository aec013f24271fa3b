"""`RunMasker`: one run's documents turned into the worker's work items, as they arrive.

`XRDMaskCallback` makes one per run (its start document) and routes the run's documents to it.
The image stream's first descriptor opens the run (`OpenRun`: its image field, frame shape and
PONI: `xrd_bluesky_mask.documents`); each frame an event page or stream datum announces becomes
a `FrameItem` (a detector file a stream resource names is noted, so the frame is read from the
file without Tiled); the stop document closes the run (`CloseRun`, with its exit status).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from event_model import DocumentRouter

from ..documents import find_image_field, find_poni, start_frame_shape
from ..pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec, WarmGeometry

if TYPE_CHECKING:
    from event_model import EventDescriptor, EventPage, RunStop, StreamDatum, StreamResource

    from .callback import XRDMaskCallback

__all__ = ["RunMasker"]

log = logging.getLogger(__name__)


class RunMasker(DocumentRouter):
    """Turns one run's documents into work items for ``owner``'s worker (one instance per
    run)."""

    def __init__(self, owner: XRDMaskCallback, start: dict[str, Any]) -> None:
        super().__init__()
        self.owner, self.start_doc = owner, start
        self.uid: str = start["uid"]
        self.spec: RunSpec | None = None
        self.descriptors: dict[str, bool] = {}  # descriptor uid -> is the image stream
        self.resources: dict[str, StreamResource] = {}  # stream_resource uid -> document
        self.rows = 0  # frames announced so far by stream_datum
        self._warm_from_start()

    def _warm_from_start(self) -> None:
        """Have the worker build the run's engine and tables now when the start document (or
        the callback) already gives the PONI: the descriptor that opens the run comes only
        with the first frame. The frame shape is the start document's
        ``xrd_mask_detector.shape_px`` or the PONI's detector's."""
        poni, where = self._poni({})
        if poni is None:
            return
        self.owner.worker.submit(WarmGeometry(self.uid, poni, start_frame_shape(self.start_doc),
                                              where))

    def _poni(self, descriptor: Mapping[str, Any]) -> tuple[str | None, str]:
        """The run's PONI text and where it came from (the file, for a callback's PONI),
        named in messages."""
        poni, where = find_poni(self.start_doc, descriptor, self.owner.poni)
        if where == "callback" and self.owner.poni_path:
            where = self.owner.poni_path
        return poni, where

    def descriptor(self, doc: EventDescriptor) -> None:
        owner = self.owner
        if owner.stream is not None and doc.get("name") != owner.stream:
            self.descriptors[doc["uid"]] = False
            return
        if self.spec is not None:  # a later descriptor of the same stream
            self.descriptors[doc["uid"]] = (doc.get("name") == self.spec.stream
                                            and self.spec.field in doc["data_keys"])
            return
        field = find_image_field(doc["data_keys"], owner.field)
        if field is None:
            self.descriptors[doc["uid"]] = False
            if owner.field is not None:
                log.warning("xrd-mask: run %s stream %r has no data key %r (keys: %s)",
                            self.uid, doc.get("name"), owner.field, sorted(doc["data_keys"]))
            return
        shape = [int(n) for n in doc["data_keys"][field].get("shape") or [] if n is not None][-2:]
        poni, where = self._poni(doc)
        num = self.start_doc.get("num_points")
        self.spec = RunSpec(self.uid, doc.get("name", "primary"), field, poni,
                            (shape[0], shape[1]) if len(shape) == 2 else None,
                            int(num) if isinstance(num, int) else None, where)
        self.descriptors[doc["uid"]] = True
        owner.worker.submit(OpenRun(self.spec))

    # event_model's stubs say the page must come back; its dispatcher passes None through
    # as the page unchanged
    def event_page(self, doc: EventPage) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        spec = self.spec
        if spec is None or not self.descriptors.get(doc["descriptor"]):
            return
        if spec.field not in doc.get("data", {}):
            return  # external STREAM: data comes as stream_datum
        for seq in doc["seq_num"]:
            self.owner.worker.submit(FrameItem(self.uid, spec.stream, spec.field, int(seq) - 1))

    def stream_resource(self, doc: StreamResource) -> None:
        self.resources[doc["uid"]] = doc

    def stream_datum(self, doc: StreamDatum) -> None:
        spec = self.spec
        if spec is None or not self.descriptors.get(doc["descriptor"]):
            return
        resource = self.resources.get(doc["stream_resource"]) or {}
        if resource.get("data_key", "") != spec.field:
            return
        start = int(doc["indices"]["start"])
        n = int(doc["indices"]["stop"]) - start
        locator = self.owner.locator
        if locator is not None:  # where the frames are, without asking Tiled
            locator.note_file(self.uid, spec.stream, spec.field, self.rows, n,
                              uri=str(resource.get("uri", "")),
                              parameters=resource.get("parameters"),
                              mimetype=str(resource.get("mimetype", "")), file_first=start)
        for k in range(n):
            self.owner.worker.submit(FrameItem(self.uid, spec.stream, spec.field, self.rows + k))
        self.rows += n

    def stop(self, doc: RunStop) -> None:
        if self.spec is not None:
            self.owner.worker.submit(CloseRun(self.uid, str(doc.get("exit_status", "")),
                                              str(doc.get("reason") or "")))
