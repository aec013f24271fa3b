"""Where results are stored: one `~xrd_bluesky_mask.protocols.ResultSink` protocol, its
storages and the wrappers in front of them.

- `tiled.TiledResultSink`: results in Tiled (layout: `xrd_bluesky_mask.tiled.results`).
- `memory.InMemoryResultSink`: results in dictionaries (tests, offline use).
- `retry.RetryingSink`: waits out outages of the store (the one outage mechanism).
- `journaled.JournaledSink`: keeps every call on disk first (`journal.Journal`, its files),
  replayed through a `RetryingSink` (nothing lost in an outage or a restart; the live path).
- `base.SinkWrapper`: the typed base of the wrappers.

The pipeline writes into this layer; only this layer writes results to Tiled.
"""
