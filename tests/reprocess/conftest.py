"""Live fixtures (in-process Tiled server, RunEngine), shared with the other live folders, and
one small scan that the reprocessing tests read."""

from tests.live_fixtures import (  # noqa: F401
    live_base,
    make_det,
    raw_dir,
    run_engine,
    tiled_client,
    tiled_server,
)
from tests.reprocess.helpers import stored_run  # noqa: F401
