"""``xrd-mask worker`` as its own process behind a real 0MQ proxy, and what happens when the Tiled
server or the worker dies mid-run.

Real processes throughout: ``bluesky-0MQ-proxy``, ``tiled serve catalog`` (persistent
directory, restarted on the same port), ``xrd-mask worker``; a `Session` in this process runs
each scan and publishes with `bluesky.callbacks.zmq.Publisher` after TiledWriter
(``batch_size=1``). The worker's masker waits at a `Gate`, so each test decides exactly how far
a run gets before something is killed; nothing here waits a guessed number of seconds.
"""

from __future__ import annotations

import signal
import sys
import types

import numpy as np
import pytest
from bluesky.callbacks.zmq import Publisher
from bluesky.plans import count

from tests.bluesky.remote_helpers import Gate, start_proxy, start_worker
from xrd_bluesky_mask.api import predict_mask
from xrd_bluesky_mask.bluesky.session import Session
from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.protocols import MaskCode
from xrd_bluesky_mask.testing import free_port, serve_tiled, wait_for
from xrd_bluesky_mask.tiled.frames import as_frame
from xrd_bluesky_mask.tiled.results import find_results, result_versions

SHAPE = (256, 256)


@pytest.fixture(scope="module")
def remote(tmp_path_factory, raw_dir):
    """A Tiled server process, a 0MQ proxy, a Publisher into it, and the masker's gate."""
    base = tmp_path_factory.mktemp("remote")
    server = serve_tiled(base / "tiled", readable_storage=[raw_dir], process=True)
    in_port, out_port = free_port(), free_port()
    proxy = start_proxy(in_port, out_port, base / "proxy.log")
    publisher = Publisher(f"127.0.0.1:{in_port}")  # the worker's start waits until it delivers
    ns = types.SimpleNamespace(server=server, out_port=out_port, publisher=publisher,
                               base=base, raw_dir=raw_dir, gate=Gate(base / "gate"))
    yield ns
    publisher.close()
    proxy.stop()
    server.close()


@pytest.fixture(scope="module")
def worker(remote):
    """One worker for the published runs (results under the default root)."""
    proc = start_worker(remote.out_port, remote.server, remote.base / "worker.log",
                        remote.publisher, remote.gate)
    yield proc
    proc.stop()


def _scan(remote, num: int, seed: int) -> str:
    """A published scan of ``num`` 256x256 frames: TiledWriter, then the Publisher. A Session
    per scan, so each one starts on a fresh client (the server may have been restarted)."""
    with Session(remote.server.client()) as session:
        session.RE.subscribe(remote.publisher)
        det = session.add_detector(remote.raw_dir, shape=SHAPE, name="det", seed=seed,
                                   presets=("rings_spots", "spots_po"), n_unique=3)
        result = session.RE(count([det], num=num), **det.start_metadata())
    assert result.exit_status == "success"
    return result.run_start_uids[0]


def _node(client, uid: str, root: str = "derived/xrd_mask"):
    try:
        node = find_results(client, uid, root=root)
    except KeyError:
        return None
    node.refresh()
    return node


def _check_masks(client, uid: str, node, n: int) -> None:
    raw = client[uid]["primary"]["det"]
    masks = node["mask"].read()
    assert masks.shape == (n, *SHAPE)  # one row per frame: nothing appended twice
    poni = node.metadata["poni"]
    for i in range(n):
        np.testing.assert_array_equal(masks[i] != 0, predict_mask(as_frame(raw[i]), poni,
                                                                  masker="classical"))


def _done(client, uid: str, root: str = "derived/xrd_mask", status: str = "complete"):
    node = _node(client, uid, root)
    return node if node is not None and node.metadata.get("status") == status else None


@pytest.mark.slow
def test_worker_masks_runs_published_over_0mq(remote, worker):
    uid = _scan(remote, 3, seed=1)
    client = remote.server.client()
    node = wait_for(lambda: _done(client, uid), 90, "the worker's results")
    md = node.metadata
    assert md["frames_done"] == [0, 1, 2] and md["errors"] == {}
    assert md["masker"]["masker"] == "classical" and md["integration"]["npt"] == 500
    assert md["poni"] == client[uid].metadata["start"]["xrd_mask_poni"]
    assert md["result_version"] == 1 and md["stream"] == "primary" and md["field"] == "det"
    _check_masks(client, uid, node, 3)
    patterns = node["pattern"].read()
    assert patterns["intensity"].shape == (3, 500)
    assert np.isfinite(patterns["intensity"].values).mean() > 0.5


def _written(client, uid: str, rows: int):
    """The results node once mask rows ``0 .. rows-1`` are in Tiled (the sink writes a mask as
    soon as it is computed; the arrays grow with the frames written, a row without a result
    reads "not computed"), else None."""
    node = _node(client, uid)
    if node is None or "mask" not in node:
        return None
    mask = node["mask"]
    if mask.shape[0] < rows:
        return None
    return node if all((mask[i] != MaskCode.NOT_COMPUTED).any() for i in range(rows)) else None


@pytest.mark.slow
def test_worker_rides_out_a_tiled_restart_mid_run(remote, worker):
    n = 6
    remote.gate.close(permits=2)  # frames 2.. wait until the server is down
    uid = _scan(remote, n, seed=2)
    client = remote.server.client()
    wait_for(lambda: _written(client, uid, 2), 90, "the masks of frames 0 and 1")
    remote.server.kill()  # mid-run: frames 2.. are still to mask and write
    remote.gate.open()
    worker.wait_output("result store unreachable", 60)  # results wait in the journal
    remote.server.start()
    client = remote.server.client()
    node = wait_for(lambda: _done(client, uid), 120, "the run to complete after the restart")
    assert node.metadata["frames_done"] == list(range(n)) and node.metadata["errors"] == {}
    _check_masks(client, uid, node, n)
    assert "reachable again" in worker.output()
    assert worker.proc.poll() is None  # still serving


@pytest.mark.slow
def test_reprocess_finishes_what_a_killed_worker_left(remote, worker):
    """Last in this module: it kills the module's worker."""
    from xrd_bluesky_mask.reprocess import reprocess

    n = 6
    remote.gate.close(permits=2)  # the worker masks frames 0 and 1, then waits
    uid = _scan(remote, n, seed=3)
    client = remote.server.client()
    wait_for(lambda: _written(client, uid, 2), 90, "the masks of frames 0 and 1")
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=10)
    remote.gate.open()
    node = _node(client, uid)
    # progress metadata is flushed at most once a second: 0, 1 or 2 of the written frames
    # are listed, and reprocess redoes the others
    before = set(node.metadata["frames_done"])
    assert before <= {0, 1} and node.metadata["status"] == "running"

    summary = reprocess(client, uid, masker="classical", progress=False, settings=_npt(500))
    (run,) = summary.runs
    assert (run.version, run.new_version) == (1, False)  # the worker's version, completed
    assert run.skipped == len(before) and run.processed == n - len(before)
    node = _done(client, uid)
    assert node is not None and node.metadata["frames_done"] == list(range(n))
    assert [v for v, _ in result_versions(client, uid)] == [1]
    _check_masks(client, uid, node, n)


def _npt(npt: int):
    from xrd_bluesky_mask.azimuthal import IntegrationSettings

    return IntegrationSettings(npt=npt)


def test_kafka_needs_bluesky_kafka(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "bluesky_kafka", None)  # as when it is not installed
    assert main(["worker", "--kafka", "localhost:9092", "--topic", "t"]) == 2
    err = capsys.readouterr().err
    assert "pip install bluesky-kafka" in err and "--zmq" in err


def test_kafka_dispatcher_follows_the_bluesky_kafka_api(monkeypatch):
    """With a stand-in module having bluesky_kafka.RemoteDispatcher's signature (0.10)."""
    from event_model import compose_run

    from xrd_bluesky_mask.bluesky.remote import kafka_dispatcher, serve

    run = compose_run()
    documents = [("start", run.start_doc), ("stop", run.compose_stop())]

    class RemoteDispatcher:  # signature and start() as in bluesky_kafka 0.10.0
        def __init__(self, topics, bootstrap_servers, group_id, consumer_config=None,
                     polling_duration=0.05, deserializer=None):
            self.args = (topics, bootstrap_servers, group_id, consumer_config)
            self.callbacks = []

        def subscribe(self, cb):
            self.callbacks.append(cb)

        def start(self, continue_polling=None, work_during_wait=None):
            for name, doc in documents:
                assert continue_polling()
                for cb in self.callbacks:
                    cb(name, doc)

    monkeypatch.setitem(sys.modules, "bluesky_kafka",
                        types.SimpleNamespace(RemoteDispatcher=RemoteDispatcher))
    dispatcher = kafka_dispatcher("k1:9092,k2:9092", ["xrd.docs"], group_id="g")
    assert dispatcher.args == (["xrd.docs"], "k1:9092,k2:9092", "g",
                               {"auto.offset.reset": "latest"})
    seen = []
    assert serve(dispatcher, lambda name, doc: seen.append(name), on_ready=lambda: None) == 0
    assert seen == ["start", "stop"]
    with pytest.raises(ValueError, match="at least one --topic"):
        kafka_dispatcher("k1:9092", [])


def test_worker_scale_out_options_fail_before_serving(capsys, tiled_server):
    assert main(["worker", "--zmq", "127.0.0.1:5599", "--workers", "0"]) == 2
    assert "--workers 0: must be at least 1" in capsys.readouterr().err
    rc = main(["worker", "--zmq", "127.0.0.1:5599", "--tiled", tiled_server.uri, "--api-key",
               tiled_server.api_key, "--masker", "classical", "--dask", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2 and "no Dask scheduler answers at tcp://127.0.0.1:9" in err, err
    assert "--workers N" in err
