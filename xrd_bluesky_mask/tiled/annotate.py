"""Writing annotations: human-checked masks of a run's frames, or predictions promoted as such.

`annotate_run` stores masks for some frames of a run, creating its annotation container (layout:
`xrd_bluesky_mask.tiled.annotations`) with every row "not annotated" first; `accept_masks`
promotes the predicted masks of checked frames (with corrections), recording the model they came
from. Frames annotated again are replaced.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..errors import AnnotationError, FrameError
from ..protocols import MaskCode
from .annotations import CODES, DEFAULT_ROOT, SCHEMA_VERSION, SPEC
from .nodes import get_or_create, server_root

__all__ = ["accept_masks", "annotate_run"]

_BATCH_BYTES = 64 << 20  # fill requests of at most this many bytes


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def _run_frames(client: Any, uid: str, stream: str, field_name: str | None) -> dict[str, Any]:
    """Stream, field, frame count, frame shape and PONI of a raw run in Tiled."""
    from ..documents import find_image_field, find_poni

    try:
        run = client[uid]
    except KeyError:
        raise AnnotationError(
            f"run {uid} is not in {client.uri}: pass the Tiled container the runs are written "
            "to (what TiledWriter was given)"
        ) from None
    try:
        node = run[stream]
    except KeyError:
        raise AnnotationError(f"run {uid} has no stream {stream!r} (streams: {list(run)})") \
            from None
    md = dict(node.metadata)
    name = find_image_field(md.get("data_keys") or {}, field_name)
    if name is None or name not in node:
        raise AnnotationError(
            f"run {uid} stream {stream!r} has no image field {field_name or ''!r}; "
            f"pass field= (keys: {sorted(md.get('data_keys') or {})})"
        )
    shape = tuple(int(n) for n in node[name].shape)
    poni, _ = find_poni(dict(run.metadata.get("start") or {}), md)
    return {"stream": stream, "field": name, "n_frames": shape[0],
            "frame_shape": (shape[-2], shape[-1]), "poni": poni}


def _as_codes(masks: Any, shape: tuple[int, int]) -> np.ndarray:
    """``(n, rows, cols)`` uint8 codes from bool masks (True = spot) or codes."""
    arr = np.asarray(masks) if not isinstance(masks, list | tuple) else np.stack(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(shape):
        raise AnnotationError(
            f"masks of shape {arr.shape} do not fit the run's frames of {shape[0]}x{shape[1]} px; "
            "pass one (rows, cols) mask per frame, or (n, rows, cols)"
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    bad = np.setdiff1d(np.unique(arr), list(CODES))
    if bad.size:
        raise AnnotationError(
            f"mask values {bad[:5].tolist()} are not annotation codes; use bool (True = spot) or "
            f"uint8 codes {CODES}"
        )
    return arr.astype(np.uint8)


def _new_node(parent: Any, uid: str, info: dict[str, Any]) -> Any:
    """The annotation container with a ``mask`` of 255 (nothing annotated yet)."""
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    n, (rows, cols) = info["n_frames"], info["frame_shape"]
    md = {"schema_version": SCHEMA_VERSION, "source_uid": uid, "stream": info["stream"],
          "field": info["field"], "n_frames": n, "frame_shape_px": [rows, cols],
          "poni": info["poni"], "mask_codes": {str(k): v for k, v in CODES.items()},
          "frames": [], "n_frames_annotated": 0, "spot_px": {}, "frame_info": {},
          "annotator": None, "source_model": None, "created": _now(), "updated": _now()}
    node = get_or_create(parent, uid, metadata=md, specs=[SPEC])[0]
    if "mask" in node:
        return node
    structure = ArrayStructure(
        shape=(n, rows, cols), chunks=((1,) * n, (rows,), (cols,)), dims=("frame", "y", "x"),
        data_type=BuiltinDtype.from_numpy_dtype(np.dtype(np.uint8)))
    mask = node.new(StructureFamily.array,
                    [DataSource(structure=structure, structure_family=StructureFamily.array)],
                    key="mask", specs=[],
                    metadata={"mask_codes": md["mask_codes"],
                              "attrs": {"flag_values": list(CODES),
                                        "flag_meanings": "keep spot static not_annotated"}})
    step = max(1, _BATCH_BYTES // (rows * cols))
    for start in range(0, n, step):  # unwritten blocks would read as 0 ("keep"): fill them
        stop = min(start + step, n)
        blank = np.full((stop - start, rows, cols), MaskCode.NOT_ANNOTATED, np.uint8)
        mask.patch(blank, offset=(start,))
    return node


def annotate_run(
    client: Any,
    uid: Any,
    masks: Any,
    frames: Sequence[int] | None = None,
    *,
    annotator: str | None = None,
    source_model: Mapping[str, Any] | None = None,
    stream: str = "primary",
    field: str | None = None,
    root: str = DEFAULT_ROOT,
) -> Any:
    """Store human-checked masks of some frames of a run (creating its annotation container).

    Parameters
    ----------
    client
        The Tiled container holding the runs (what TiledWriter writes to); annotations go under
        ``root`` from the server's root.
    uid
        Source run uid (or its BlueskyRun client).
    masks
        bool ``(n, rows, cols)`` (True = spot, False = checked, not a spot) or uint8 codes
        (0 keep, 1 spot, 2 static, 255 not annotated); a single ``(rows, cols)`` mask for one
        frame. Same shape as the run's frames.
    frames
        Frame index of each mask (0-based, as in ``derived/xrd_mask``); None: ``0..n-1``.
        Frames annotated before are replaced.
    annotator
        Who checked the masks; default ``$USER``.
    source_model
        ``{"model_id", "sha256"}`` of the model whose predictions were checked (`accept_masks`
        sets it); None for masks drawn by hand.
    stream, field
        Where the frames are; ``field=None`` takes the stream's largest image.

    Returns
    -------
    tiled.client.container.Container
        The annotation container.

    Raises
    ------
    AnnotationError
        The run is not in ``client``, or masks/frames do not fit its frames.
    """
    from .results import run_uid_of

    source_uid = run_uid_of(uid)
    info = _run_frames(client, source_uid, stream, field)
    codes = _as_codes(masks, info["frame_shape"])
    idx = list(range(len(codes))) if frames is None else [int(i) for i in frames]
    if len(idx) != len(codes) or len(set(idx)) != len(idx):
        raise AnnotationError(f"{len(codes)} masks but frames {idx}: give one distinct frame "
                              "index per mask")
    outside = [i for i in idx if not 0 <= i < info["n_frames"]]
    if outside:
        raise AnnotationError(f"frames {outside} are not in run {source_uid}, which has "
                              f"{info['n_frames']} frames (0..{info['n_frames'] - 1})")
    parent = server_root(client)
    for part in [p for p in root.split("/") if p]:
        parent = get_or_create(parent, part)[0]
    node = _new_node(parent, source_uid, info)
    stored = tuple(node.metadata.get("frame_shape_px") or ())
    if stored != tuple(info["frame_shape"]) or node.metadata.get("n_frames") != info["n_frames"]:
        raise AnnotationError(
            f"existing annotations of run {source_uid} are {stored} px x "
            f"{node.metadata.get('n_frames')} frames but the run has {info['frame_shape']} px x "
            f"{info['n_frames']} frames; delete {root}/{source_uid} to annotate it again"
        )
    who, when = annotator or _user(), _now()
    model = dict(source_model) if source_model else None
    array = node["mask"]
    for i, frame_codes in zip(idx, codes, strict=True):
        array.write_block(frame_codes[None], block=(i, 0, 0))
    done = sorted({int(i) for i in node.metadata.get("frames", [])} | set(idx))
    node.update_metadata({
        "frames": done, "n_frames_annotated": len(done),
        "spot_px": {str(i): int(np.count_nonzero(c == 1)) for i, c in zip(idx, codes,
                                                                          strict=True)},
        "frame_info": {str(i): {"annotator": who, "when": when, "source_model": model}
                       for i in idx},
        "annotator": who, "source_model": model, "updated": when,
    })
    return node


def accept_masks(
    client: Any,
    uid: Any,
    frames: Sequence[int],
    *,
    edits: Mapping[int, np.ndarray] | None = None,
    annotator: str | None = None,
    root: str = DEFAULT_ROOT,
) -> Any:
    """Promote the predicted masks of ``frames`` (``derived/xrd_mask``) to annotations.

    Parameters
    ----------
    frames
        Frames whose predicted masks a person checked (they must have results).
    edits
        frame index → corrected mask (bool, True = spot, or annotation codes) replacing the
        prediction of that frame; the frame must be in ``frames``.
    annotator
        Who checked them; default ``$USER``.

    The source model (id and sha256 from the results' provenance) is recorded. Predicted
    codes keep their meaning (0 keep, 1 spot, 2 static).

    Raises
    ------
    KeyError
        The run has no results (see `xrd_bluesky_mask.tiled.results.find_results`).
    FrameError
        A frame without results, or an edit for a frame not in ``frames``.
    """
    from .results import find_results, load_masks, run_uid_of

    source_uid = run_uid_of(uid)
    wanted = [int(i) for i in frames]
    extra = sorted(set(edits or {}) - set(wanted))
    if extra:
        raise FrameError(f"edits for frames {extra} that are not in frames={wanted}; add them")
    md = find_results(client, source_uid).metadata
    done = {int(i) for i in md.get("frames_done", [])}
    missing = [i for i in wanted if i not in done]
    if missing:
        raise FrameError(
            f"frames {missing} of run {source_uid} have no predicted mask (frames done: "
            f"{sorted(done)}); reprocess the run, or annotate them with annotate_run"
        )
    predicted = load_masks(client, source_uid)
    masks = []
    for i in wanted:
        edit = (edits or {}).get(i)
        masks.append(predicted[i] if edit is None else _as_codes(edit, predicted.shape[1:])[0])
    model = {"model_id": md.get("model_id"), "sha256": md.get("model_sha256")}
    return annotate_run(client, source_uid, np.stack(masks), wanted, annotator=annotator,
                        source_model=model if model["model_id"] else None,
                        stream=md.get("stream") or "primary", field=md.get("field"), root=root)
