"""Human-checked spot masks in Tiled: the annotations a model is retrained from.

One container per source run, beside the derived results (a sibling root, same frame
indexing), spec ``XRDMaskAnnotation``::

    derived/xrd_annotations/<source_uid>   container, specs ["XRDMaskAnnotation"], metadata below
        mask                               uint8 (frame, y, x), one chunk per frame of the run:
                                           0 keep (checked: not a spot), 1 spot,
                                           2 static (detector mask: carries no label),
                                           255 not annotated (whole frames nobody checked, or
                                           pixels an annotator left open)

Every frame of the source run has a row; frames nobody annotated are all 255, so a plain tiled
client never mistakes them for "checked, no spots". The metadata also lists the annotated
frames, so nothing needs reading the array to find them:

``schema_version``, ``source_uid``, ``stream``, ``field``, ``n_frames`` (rows), ``frame_shape_px``,
``poni`` (PONI text of the run's geometry, or None), ``mask_codes``, ``frames`` (sorted annotated
frame indices), ``n_frames_annotated``, ``spot_px`` (frame → spot pixels), ``frame_info`` (frame →
``annotator``, ``when`` (UTC ISO 8601), ``source_model``), ``annotator``, ``source_model``
(``{"model_id", "sha256"}`` when the masks were promoted from a model's predictions, else None)
and ``created``/``updated`` (UTC ISO 8601) of the latest call.

Plain tiled clients read and search them: ``c["derived/xrd_annotations/<uid>/mask"][i]``,
``c.search_deep(Key("source_uid") == uid)`` (the results container matches too: check the spec).
This module finds and reads them; `xrd_bluesky_mask.tiled.annotate` writes them (its
``annotate_run`` and ``accept_masks``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AnnotationError
from ..protocols import MaskCode
from .nodes import server_root

__all__ = [
    "DEFAULT_ROOT",
    "SPEC",
    "AnnotatedRun",
    "annotated_runs",
    "find_annotations",
    "load_annotations",
    "read_annotated_frames",
]

#: Container holding one annotation container per source run (sibling of ``derived/xrd_mask``).
DEFAULT_ROOT = "derived/xrd_annotations"
SPEC = "XRDMaskAnnotation"
SCHEMA_VERSION = 1
#: Values of the ``mask`` array.
CODES = MaskCode.annotation_codes()


def _uid(run_or_uid: Any) -> str:
    from .results import run_uid_of

    return run_uid_of(run_or_uid)


@dataclass
class AnnotatedRun:
    """The annotations of one run, as `load_annotations` returns them.

    Attributes
    ----------
    uid
        Source run uid.
    frames
        Annotated frame indices, sorted.
    codes
        uint8 ``(len(frames), rows, cols)``: 0 keep, 1 spot, 2 static, 255 not annotated.
    stream, field
        Where the run's frames are.
    poni
        PONI text of the run's geometry (None when the run carried none).
    n_frames
        Frames in the run (rows of the stored array).
    metadata
        The container's metadata.
    """

    uid: str
    frames: list[int]
    codes: np.ndarray
    stream: str
    field: str
    poni: str | None
    n_frames: int
    # dataclasses.field: in this class body `field` names the attribute above
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` px."""
        return int(self.codes.shape[1]), int(self.codes.shape[2])


def annotated_runs(client: Any, *, root: str = DEFAULT_ROOT) -> list[str]:
    """Uids of the runs with at least one annotated frame (oldest annotation container first)."""
    from tiled.queries import Key

    try:
        node = server_root(client)[root]
    except KeyError:
        return []
    hits = node.search(Key("n_frames_annotated") > 0)
    return [str(md.get("source_uid", key)) for key, md in
            ((k, v.metadata) for k, v in hits.items())]


def find_annotations(client: Any, uid: Any, *, root: str = DEFAULT_ROOT) -> Any:
    """The annotation container of a run.

    Raises
    ------
    AnnotationError
        The run has no annotations (the message says how to make them).
    """
    source_uid = _uid(uid)
    try:
        node = server_root(client)[f"{root}/{source_uid}"]
    except KeyError:
        node = None
    if node is None or not node.metadata.get("frames"):
        raise AnnotationError(
            f"run {source_uid} has no annotations (nothing at {root}/{source_uid}): check some "
            "frames first with annotate_run(client, uid, masks, frames) or accept_masks(client, "
            "uid, frames)"
        )
    return node


def load_annotations(client: Any, uid: Any, *, root: str = DEFAULT_ROOT) -> AnnotatedRun:
    """The annotated frames of a run (only those rows are read)."""
    node = find_annotations(client, uid, root=root)
    md = dict(node.metadata)
    frames = sorted(int(i) for i in md["frames"])
    array = node["mask"]
    codes = np.stack([np.asarray(array[i]) for i in frames]).astype(np.uint8)
    return AnnotatedRun(uid=str(md["source_uid"]), frames=frames, codes=codes,
                        stream=md.get("stream", "primary"), field=md.get("field", ""),
                        poni=md.get("poni"), n_frames=int(md.get("n_frames", len(frames))),
                        metadata=md)


def read_annotated_frames(client: Any, annotated: AnnotatedRun) -> list[np.ndarray]:
    """The run's frames (2D counts) at the annotated indices, read from Tiled.

    Raises
    ------
    AnnotationError
        The run's frames are gone, or their shape or number no longer fits the annotations.
    """
    from .frames import as_frame

    try:
        array = client[annotated.uid][annotated.stream][annotated.field]
    except KeyError:
        raise AnnotationError(
            f"the frames of annotated run {annotated.uid} ({annotated.stream}/{annotated.field}) "
            f"are not in {client.uri}; pass the container holding the raw runs"
        ) from None
    shape = tuple(int(n) for n in array.shape)
    if shape[-2:] != annotated.frame_shape or shape[0] <= max(annotated.frames):
        raise AnnotationError(
            f"annotations of run {annotated.uid} ({annotated.frame_shape[0]}x"
            f"{annotated.frame_shape[1]} px, frames {annotated.frames}) do not match its frames "
            f"({shape[-2]}x{shape[-1]} px, {shape[0]} frames); annotate the run again"
        )
    return [as_frame(array[i]) for i in annotated.frames]
