"""The Prefect end-of-run flow, run in this process on Prefect's temporary local API (no Prefect
server), against a ``tiled serve`` child process holding a stored Bluesky run."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tests.extras import require_extra
from tests.plugins.flaky import FlakyMasker
from xrd_bluesky_mask.errors import UnknownSource
from xrd_bluesky_mask.testing import serve_tiled
from xrd_bluesky_mask.tiled.results import frames_done

SHAPE = (128, 128)
FLAKY = f"{FlakyMasker.__module__}:FlakyMasker"


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """Prefect's temporary API and database for this module (its own home, no telemetry)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("PREFECT_LOGGING_TO_API_ENABLED", "false")
        require_extra("prefect", "prefect")
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=240):  # 20-40 s on 2 busy cores
            yield


@pytest.fixture(scope="module")
def served_run(tmp_path_factory, raw_dir):
    """A ``tiled serve`` process holding one stored 4-frame run: ``(server, uid)``."""
    from bluesky.plans import count

    from xrd_bluesky_mask.bluesky.session import Session

    server = serve_tiled(tmp_path_factory.mktemp("flow") / "tiled", readable_storage=[raw_dir],
                         process=True)
    with Session(server.client()) as session:
        det = session.add_detector(raw_dir, shape=SHAPE, name="det", seed=23,
                                   presets=("rings_spots",), n_unique=2)
        result = session.RE(count([det], num=4), **det.start_metadata())
    assert result.exit_status == "success"
    yield server, result.run_start_uids[0]
    server.close()


def _tiled(server) -> dict:
    return {"tiled_uri": server.uri, "api_key": server.api_key}


@pytest.mark.timeout(400)  # Prefect's temporary API and a `tiled serve` process start first
def test_end_of_run_flow_from_the_stop_document(prefect_api, served_run):
    from xrd_bluesky_mask.plugins.prefect import xrd_mask_end_of_run

    server, uid = served_run
    client = server.client()
    stop = dict(client[uid].metadata["stop"])  # what the facility's trigger hands over
    root = f"derived/flow_{uuid.uuid4().hex[:6]}"
    result = xrd_mask_end_of_run(stop_document=stop, masker="classical", root=root,
                                 **_tiled(server))
    assert result["result_path"] == f"{root}/{uid}" and result["uid"] == uid
    assert (result["status"], result["processed"], result["version"]) == ("complete", 4, 1)
    assert result["exit_status"] == "success" and result["mode"] == "local"
    node = client[result["result_path"]]
    assert frames_done(node) == [0, 1, 2, 3] and node.metadata["status"] == "complete"
    masks = node["mask"].read()
    assert masks.shape == (4, *SHAPE) and (np.asarray(masks) == 1).any()

    again = xrd_mask_end_of_run(uid=uid, masker="classical", root=root, **_tiled(server))
    assert again["result_path"] == result["result_path"]
    assert (again["status"], again["processed"], again["skipped"]) == ("up_to_date", 0, 4)


def test_failed_frames_are_retried_and_the_run_completed(prefect_api, served_run):
    from xrd_bluesky_mask.plugins.prefect import xrd_mask_end_of_run

    server, uid = served_run
    root = f"derived/flow_{uuid.uuid4().hex[:6]}"
    FlakyMasker.failures_left, FlakyMasker.calls = 2, 0
    result = xrd_mask_end_of_run(uid=uid, masker=FLAKY, root=root, retries=1,
                                 retry_delay_s=0, **_tiled(server))
    # the first try masked 2 of the 4 frames; the retry did the 2 that failed, no more
    assert (result["status"], result["processed"], result["skipped"]) == ("complete", 2, 2)
    assert FlakyMasker.calls == 6 and FlakyMasker.failures_left == 0
    assert frames_done(server.client()[result["result_path"]]) == [0, 1, 2, 3]


def test_an_unknown_run_fails_at_once(prefect_api, served_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from xrd_bluesky_mask.plugins.prefect import xrd_mask_end_of_run

    server, _ = served_run
    state = xrd_mask_end_of_run(stop_document={"run_start": "no-such-run"}, masker="classical",
                                retries=3, retry_delay_s=0, return_state=True,
                                **_tiled(server))
    assert state.is_failed()
    with pytest.raises(UnknownSource, match="no-such-run"):
        state.result()
    with get_client(sync_client=True) as prefect:
        runs = prefect.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    (attempt,) = [r for r in runs if r.name.startswith("xrd-mask reprocess")]
    assert attempt.run_count == 1  # not retried: only a person can fix an unknown uid
