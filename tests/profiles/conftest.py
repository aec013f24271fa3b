"""The session's live fixtures (in-process Tiled server reading ``live_base/raw``)."""

from tests.live_fixtures import live_base, raw_dir, tiled_server  # noqa: F401
