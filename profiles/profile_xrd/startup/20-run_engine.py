"""The RunEngine, with TiledWriter(batch_size=1) subscribed first; RE(plan) returns run uids."""

RE = xrd.make_run_engine()  # noqa: F821
tiled_writer = xrd.tiled_writer  # noqa: F821
