"""Plans: bluesky's, and retrain / set_model from xrd_bluesky_mask.bluesky.plans when present;
`reprocess(tiled_client, [uid])` to mask stored runs again."""

import importlib.util

import bluesky.plan_stubs as bps  # noqa: F401
from bluesky.plans import count, grid_scan, list_scan, rel_scan, scan  # noqa: F401

xrd_plans = ["count", "scan", "rel_scan", "list_scan", "grid_scan", "bps.*"]
xrd_plans_note = ""
if importlib.util.find_spec("xrd_bluesky_mask.bluesky.plans") is None:
    xrd_plans_note = ("retrain and set_model are not available: xrd_bluesky_mask.bluesky.plans "
                      "is not installed in this version")
else:
    try:
        from xrd_bluesky_mask.bluesky.plans import retrain, set_model  # noqa: F401
        from xrd_bluesky_mask.reprocess import reprocess  # noqa: F401
        from xrd_bluesky_mask.tiled.annotate import accept_masks, annotate_run  # noqa: F401
        from xrd_bluesky_mask.tiled.annotations import annotated_runs  # noqa: F401

        xrd_plans += ["retrain", "set_model", "reprocess(tiled_client, [uid])"]
    except ImportError as exc:
        xrd_plans_note = f"retrain and set_model could not be imported: {exc}"
