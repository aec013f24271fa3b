"""`xrd_bluesky_mask.reprocess` on a series served by the adapters (not a Bluesky run)."""

from __future__ import annotations

import numpy as np


def test_reprocess_on_the_adapter_served_series_writes_derived_nodes(frames_server, registered,
                                                                      frames_folder):
    from xrd_bluesky_mask.reprocess import reprocess
    from xrd_bluesky_mask.tiled.results import find_results, load_masks, load_patterns

    client = frames_server.client
    summary = reprocess(client, ["frames/scan"], masker="classical", progress=False)
    (run,) = summary.runs
    assert (run.kind, run.frames, run.processed, run.status) == ("array_node", 3, 3, "complete")
    node = find_results(client, "frames/scan")
    md = node.metadata
    assert md["status"] == "complete", md.get("errors")
    assert md["frames_done"] == [0, 1, 2]
    assert md["poni"] == frames_folder.poni
    masks = load_masks(client, "frames/scan")
    assert masks.shape == (3, 256, 256) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1, 2} and (masks == 1).any()
    assert load_patterns(client, "frames/scan").sizes["frame"] == 3
