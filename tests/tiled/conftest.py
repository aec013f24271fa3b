"""Live fixtures (in-process Tiled server, RunEngine), shared with the other live folder."""

from tests.live_fixtures import (  # noqa: F401
    live_base,
    make_det,
    raw_dir,
    run_engine,
    tiled_client,
    tiled_server,
)
