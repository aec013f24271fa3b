"""What the outage, backup and leftover tests share: run documents and their backup files,
a scan during which the only Tiled server (raw runs and results) is SIGKILLed, and the check
that everything reached Tiled in the end. The server is
`xrd_bluesky_mask.testing.serve_tiled(..., process=True)`; the fixture cutting the Tiled
client's own retries is in tests/conftest.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import event_model
import numpy as np
from bluesky.plans import count

from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.tiled.frames import as_frame
from xrd_bluesky_mask.tiled.results import find_results

SHAPE = (96, 96)


def run_documents(n: int = 3) -> list[tuple[str, dict]]:
    """A small run with scalar data: start, descriptor, ``n`` events, stop."""
    run = event_model.compose_run()
    docs: list[tuple[str, dict]] = [("start", dict(run.start_doc))]
    stream = run.compose_descriptor(
        name="primary", data_keys={"x": {"source": "sim", "dtype": "number", "shape": []}})
    docs.append(("descriptor", dict(stream.descriptor_doc)))
    for i in range(n):
        docs.append(("event", dict(stream.compose_event(data={"x": float(i)},
                                                        timestamps={"x": 0.0}))))
    docs.append(("stop", dict(run.compose_stop())))
    return docs


def write_backup(path: Any, docs: list[tuple[str, dict]]) -> None:
    """Write ``docs`` as TiledWriter's backup does (JSON Lines of name and document)."""
    with open(path, "w") as fh:
        for name, doc in docs:
            fh.write(json.dumps({"name": name, "doc": doc}) + "\n")


@dataclass
class OutageScan:
    """A scan's run uid and when (monotonic s) its server was killed."""

    uid: str
    killed_at: float


def scan_killing_server(session: Any, server: Any, n: int, kill_after: int,
                        delay: float = 0.1) -> OutageScan:
    """``count`` ``n`` frames on a new simulated detector; the server is SIGKILLed right after
    event ``kill_after``. Asserts that the scan itself succeeded."""
    det = session.add_detector(shape=SHAPE, presets="rings_spots", seed=11)
    killed: list[float] = []

    def outage(name: str, doc: dict) -> None:
        if name == "event" and doc["seq_num"] == kill_after and not killed:
            server.kill()
            killed.append(time.monotonic())

    token = session.RE.subscribe(outage)
    try:
        result = session.RE(count([det], num=n, delay=delay), **det.start_metadata())
    finally:
        session.RE.unsubscribe(token)
    assert killed and result.exit_status == "success"  # the scan never dies because Tiled does
    return OutageScan(result.run_start_uids[0], killed[0])


def assert_all_in_tiled(client: Any, uid: str, n: int) -> dict[str, Any]:
    """The raw run is complete in Tiled and its derived node holds exactly one result per
    frame (``complete``, frames 0..n-1, each mask the classical masker's); returns its
    metadata."""
    run = client[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    frames = run["primary"]["det"]
    assert frames.shape == (n, 1, *SHAPE)
    node = find_results(client, uid)
    md = node.metadata
    assert md["status"] == "complete", md.get("errors")
    assert md["frames_done"] == list(range(n)) and md["frames_pending"] == 0
    masks = node["mask"][:]
    assert masks.shape == (n, *SHAPE)  # one result per frame, none twice
    for i in range(n):
        np.testing.assert_array_equal(
            masks[i] != 0, predict_mask(as_frame(frames[i]), md["poni"], masker="classical"))
    assert not np.isnan(node["pattern"]["intensity"][:]).any()  # every pattern row written
    return dict(md)
