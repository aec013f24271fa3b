"""A scan written by a separate process, TiledWriter only: what ``xrd-mask watch`` is for.

``python -m tests.bluesky.watch_helpers URI KEY RAW N SEED [GATE PAUSE_AFTER]`` runs a
RunEngine (a `Session`: TiledWriter with its backup, no masking) with a simulated detector and
takes ``N`` frames. With ``GATE`` and ``PAUSE_AFTER`` it stops before frame ``PAUSE_AFTER``,
touches ``GATE/paused`` and goes on once ``GATE/resume`` exists, so that a test decides what
happens mid-scan (a Tiled restart) without guessing times. It prints ``uid <start uid>`` first
and ``done <exit status>`` once the raw run is delivered to Tiled (replayed from the backup
after an outage).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

SHAPE = (96, 96)


def _plan(det: Any, n: int, md: dict[str, Any], gate: Path | None, pause_after: int) -> Any:
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    @bpp.stage_decorator([det])
    @bpp.run_decorator(md={"num_points": n, "plan_name": "count", **md})
    def inner() -> Any:
        for i in range(n):
            if gate is not None and i == pause_after:
                (gate / "paused").touch()
                while not (gate / "resume").exists():
                    yield from bps.sleep(0.05)
            yield from bps.trigger_and_read([det])

    return (yield from inner())


def main(argv: list[str]) -> int:
    from xrd_bluesky_mask.bluesky.session import Session

    uri, key, raw, n, seed = argv[:5]
    gate = Path(argv[5]) if len(argv) > 5 else None
    pause_after = int(argv[6]) if len(argv) > 6 else -1
    with Session(uri=uri, api_key=key, readable_storage=[raw],
                 backup_directory=Path(raw).parent / "backup", replay_poll_s=0.5,
                 replay_max_wait=1.0) as s:
        det = s.add_detector(shape=SHAPE, presets=("rings_spots", "spots_po"), seed=int(seed),
                             name="det")

        def announce(name: str, doc: dict[str, Any]) -> None:
            print(f"uid {doc['uid']}", flush=True)

        s.RE.subscribe(announce, "start")
        result = s.RE(_plan(det, int(n), det.start_metadata(), gate, pause_after))
        if not s.wait(180):
            print(f"waiting: {s.waiting()}", flush=True)
            return 1
    print(f"done {result.exit_status}", flush=True)
    return 0


def start_scan(server: Any, raw: Path, n: int, seed: int, log: Path, *,
               gate: Path | None = None, pause_after: int = -1) -> subprocess.Popen[bytes]:
    """The scan process (its output in ``log``); the Tiled client's retries cut to two
    attempts, so TiledWriter fails over to its backup within a second when Tiled dies."""
    import os

    from tests.bluesky.remote_helpers import REPO

    cmd = [sys.executable, "-m", "tests.bluesky.watch_helpers", server.uri, server.api_key,
           str(raw), str(n), str(seed)]
    if gate is not None:
        cmd += [str(gate), str(pause_after)]
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1",
                                     "TILED_RETRY_ATTEMPTS": "2", "TILED_RETRY_TIMEOUT": "2"})


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
