"""A run's engine and geometry tables are built when it opens, not on its first frame."""

from __future__ import annotations

import numpy as np

from xrd_bluesky_mask.azimuthal import cached_integrator
from xrd_bluesky_mask.geometry import make_geometry
from xrd_bluesky_mask.masking.classical import RingOutlierMasker
from xrd_bluesky_mask.pipeline.items import CloseRun, FrameItem, OpenRun, RunSpec
from xrd_bluesky_mask.pipeline.process import Pipeline
from xrd_bluesky_mask.pipeline.worker import Worker
from xrd_bluesky_mask.simulate import preset, simulate_frame
from xrd_bluesky_mask.sinks.memory import InMemoryResultSink
from xrd_bluesky_mask.tiled.frames import InMemoryFrameSource

SHAPE = (160, 160)


def _cached(geometry) -> set[str]:
    return {k[0] for k in geometry._cache if isinstance(k, tuple)}


def test_warm_builds_the_engine_and_the_tables_once_per_geometry():
    geometry = make_geometry(SHAPE, pixel_size_m=150e-6, distance_m=0.1)
    pipeline = Pipeline(RingOutlierMasker(), geometry, tables=True)
    assert not {"ring_bins", "sector_bins"} & _cached(geometry)
    assert pipeline.warm() > 0
    assert {"ring_bins", "sector_bins", "warm"} <= _cached(geometry)
    integrator = cached_integrator(geometry)
    assert integrator._n_builds == 1  # pyFAI's engine: built by the warm-up
    assert pipeline.warm() == 0.0  # once per geometry
    rng = np.random.default_rng(1)
    (result,) = pipeline.process([rng.poisson(100, SHAPE).astype(np.float32)])
    assert integrator._n_builds == 1 and result.tables is not None  # nothing rebuilt


def test_the_worker_warms_a_run_when_it_opens_before_any_frame():
    sim = simulate_frame(preset("rings_spots").with_shape(SHAPE), seed=2, shape=SHAPE)
    src, sink = InMemoryFrameSource(), InMemoryResultSink()
    worker = Worker(src, sink, masker=RingOutlierMasker(), niceness=0).start()
    uid = "warm-run"
    spec = RunSpec(uid=uid, stream="primary", field="det", poni=sim.geometry.poni_text,
                   shape=SHAPE, frames_expected=1)
    worker.submit(OpenRun(spec))
    assert worker.wait(60)
    pipeline = worker.compute.pipelines[uid]  # opened: no frame submitted yet
    assert ("warm", True, id(pipeline.masker)) in pipeline.geometry._cache
    assert cached_integrator(pipeline.geometry, None)._n_builds == 1
    src.put(uid, "primary", "det", 0, sim.image.astype(np.float32))
    worker.submit(FrameItem(uid, "primary", "det", 0))
    worker.submit(CloseRun(uid))
    assert worker.close(60)
    assert sink.metadata[uid]["status"] == "complete"
    assert len(sink.run_tables(uid)["frames"]) == 1
