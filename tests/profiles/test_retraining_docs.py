"""The retraining walk-through of docs/beamline.md, run as written in the beamline profile
(its startup files, the embedded Tiled server, the RunEngine, the simulated detector and the
packaged U-Net), and the refusals and warnings it promises."""

from __future__ import annotations

import logging
import re
import runpy
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xrd_bluesky_mask.errors import AnnotationError
from xrd_bluesky_mask.models.registry import ModelRegistry
from xrd_bluesky_mask.tiled.annotate import annotate_run
from xrd_bluesky_mask.tiled.annotations import load_annotations

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "profile_xrd"
STARTUP = sorted((PROFILE / "startup").glob("*.py"))
DOC = ROOT / "docs" / "beamline.md"
#: Big enough for the 256 px training window; the profile's scenes cycle frame by frame.
SHAPE = 512


def _python_blocks(heading: str) -> list[str]:
    """The ```python blocks of a section of docs/beamline.md, as a user would paste them."""
    text = DOC.read_text()
    section = text[text.index(heading):]
    section = section[:section.find("\n## ", len(heading))]
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", section, flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """The profile's startup files, headless, with the embedded server and the U-Net."""
    tmp = tmp_path_factory.mktemp("profile")
    settings = tmp / "xrd_settings.toml"
    settings.write_text(f'data_dir = "data"\n[detector]\nshape = [{SHAPE}, {SHAPE}]\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRD_SETTINGS", str(settings))
        mp.setenv("XRD_MASK_MODELS", str(tmp / "registry"))
        for var in ("XRD_TILED_URI", "TILED_URI", "TILED_API_KEY", "XRD_MASKER", "XRD_MODEL",
                    "XRD_DATA_DIR", "XRD_DETECTOR_SHAPE"):
            mp.delenv(var, raising=False)
        mp.chdir(tmp)  # the Dioptas example writes its file here
        ns: dict = {}
        try:
            for path in STARTUP:
                ns = runpy.run_path(str(path), init_globals=ns)
            assert ns["xrd"].server is not None  # the embedded server
            assert "retrain" in ns["xrd_plans"], ns["xrd_plans_note"]
            yield ns, ModelRegistry(tmp / "registry")
        finally:
            if "xrd" in ns:
                ns["xrd"].close()


def _messages(caplog, logger: str, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith(logger) and r.levelno >= level]


# the profile's start (embedded server, U-Net engine choice), a 4-frame scan masked by the
# U-Net, 3 training epochs, held-out scoring of two models: ~40 s alone on 2 busy cores
@pytest.mark.timeout(400)
def test_the_retraining_walk_through_runs_as_written(profile, caplog, capsys):
    ns, registry = profile
    walk, dioptas, with_settings = _python_blocks("## Retraining at the beamline")
    caplog.set_level(logging.DEBUG, logger="xrd_bluesky_mask")
    exec(compile(walk, "docs/beamline.md", "exec"), ns)  # noqa: S102 - the docs' own code
    printed = capsys.readouterr().out
    client, uid, retrain_uid = ns["tiled_client"], ns["uid"], ns["retrain_uid"]

    # the frames the snippet annotates hold spots (the profile's default scenes), and its edits
    # are what was stored: no spot in the top halves of frames 1 and 2
    ann = load_annotations(client, uid)
    assert ann.frames == [0, 1, 2, 3]
    half = SHAPE // 2
    assert not (ann.codes[1:3, :half] == 1).any()
    assert (ann.codes[1:3, half:] == 1).sum() > 500 and (ann.codes[0] == 1).sum() > 500

    # the stop reason, printed: the version and why it was (not) activated, in numbers
    stop = client[retrain_uid].metadata["stop"]
    assert stop["exit_status"] == "success"
    reason = stop["reason"]
    assert reason in printed
    assert re.fullmatch(
        r"registered xrdmask-r1 as version 1; (not )?activated: .*held-out TNR \d\.\d{5} "
        r"(below|within) the \d\.\d{5} allowed \(the lower of the base model's \d\.\d{5} and "
        r"target_tnr 0\.998, less tnr_tolerance 0\.001\).*", reason), reason
    row = client[retrain_uid]["result"].read()
    assert reason.endswith(str(row["reason"].values[0]))
    activated = bool(int(row["activated"][0]))
    assert reason.split("; ", 1)[1].startswith("activated" if activated else "not activated")
    # the held-out recall printed is the one stored (one number under one name)
    recall = float(row["heldout_recall"][0])
    assert f"held-out recall {recall:.4f}" in reason
    # and the snippet's last line went back to the packaged model
    assert registry.get("active").version == 0 and registry.get(1).model_id == "xrdmask-r1"

    # one log line per epoch, nothing else about epochs at INFO (no raw JSON, no "resuming")
    info = _messages(caplog, "xrd_bluesky_mask")
    epochs = [m for m in info if "epoch" in m]
    assert [m.split("  ")[0] for m in epochs] == [f"retrain: epoch {k}/3" for k in (1, 2, 3)], \
        epochs
    assert all("validation recall" in m and "held-out" not in m for m in epochs)
    assert not any("{" in m for m in epochs)
    plan_said = _messages(caplog, "xrd_bluesky_mask.bluesky.plans")
    assert plan_said[-1] == (
        f"retrain: registered xrdmask-r1 as version 1, {reason.split('; ', 1)[1]}")
    # two frames corrected, one held out: the training frames are not the predictions
    assert not _messages(caplog, "xrd_bluesky_mask.retrain", logging.WARNING)

    # the Dioptas round trip as written (nobody edits the file here: it gives the prediction
    # back, pixel for pixel, with the static pixels kept)
    codes = ns["codes"]
    exec(compile(dioptas, "docs/beamline.md", "exec"), ns)  # noqa: S102
    assert (Path.cwd() / "frame2.mask").exists()
    np.testing.assert_array_equal(ns["corrected"][2], codes[2])
    np.testing.assert_array_equal(load_annotations(client, uid).codes[2], codes[2])
    assert "RetrainSettings(min_spot_px=" in with_settings


@pytest.mark.timeout(200)  # a 4-frame scan masked by the U-Net
def test_refusals_come_from_the_call_before_any_run_is_opened(profile, caplog):
    ns, registry = profile
    RE, client, det, retrain = ns["RE"], ns["tiled_client"], ns["det"], ns["retrain"]
    (uid,) = RE(ns["count"]([det], 4))
    # frames annotated with 10 spot pixels: too few to learn from
    codes = np.zeros((3, SHAPE, SHAPE), np.uint8)
    codes[:, 100, 100:110] = 1
    annotate_run(client, uid, codes, frames=[0, 1, 3])
    docs: list[str] = []
    token = RE.subscribe(lambda name, doc: docs.append(name))
    caplog.set_level(logging.INFO)
    try:
        with pytest.raises(AnnotationError) as err:
            retrain([uid], callback=ns["xrd_callback"])  # the call itself refuses
        assert RE.state == "idle"
    finally:
        RE.unsubscribe(token)
    message = str(err.value)
    assert "only 20 spot pixels are labelled in the training frames, at least 500" in message
    assert "RetrainSettings(min_spot_px=...)" in message and "xrd_bluesky_mask.retrain" in message
    assert "(10 px)" in message and "held out" in message  # every frame's spot pixels, by role
    assert "\n" not in message  # one line
    assert docs == []  # no run opened
    assert not [r for r in caplog.records if "Run aborted" in r.getMessage()]
    assert registry.get("active").version == 0


@pytest.mark.timeout(200)  # a 4-frame scan masked by the U-Net, three checks of its frames
def test_predictions_accepted_unchanged_are_warned_about(profile, caplog):
    ns, _ = profile
    RE, client, det, retrain = ns["RE"], ns["tiled_client"], ns["det"], ns["retrain"]
    (uid,) = RE(ns["count"]([det], 4))
    assert ns["xrd_callback"].wait(120)
    ns["accept_masks"](client, uid, frames=[0, 1, 2, 3])  # unchanged
    caplog.set_level(logging.INFO)
    plan = retrain([uid], callback=ns["xrd_callback"])  # checked now; not run
    plan.close()
    (warning,) = _messages(caplog, "xrd_bluesky_mask.retrain", logging.WARNING)
    assert "are the masks xrdmask-default" in warning and "except 0 px (0.0 %" in warning
    assert "teaches it nothing" in warning and "edits=" in warning

    # correcting a training frame (not the held-out frame 2) silences it
    codes = ns["xrd"].results(uid)["mask"][:]
    fixed = codes[1].copy()
    fixed[fixed == 1] = 0
    ns["accept_masks"](client, uid, frames=[1], edits={1: fixed})
    caplog.clear()
    retrain([uid], callback=ns["xrd_callback"]).close()
    assert not _messages(caplog, "xrd_bluesky_mask.retrain", logging.WARNING)

    # correcting only the held-out frame: warned, and told why
    ns["accept_masks"](client, uid, frames=[1])  # frame 1 back to the prediction
    fixed = codes[2].copy()
    fixed[fixed == 1] = 0
    ns["accept_masks"](client, uid, frames=[2], edits={2: fixed})
    caplog.clear()
    retrain([uid], callback=ns["xrd_callback"]).close()
    (warning,) = _messages(caplog, "xrd_bluesky_mask.retrain", logging.WARNING)
    assert f"corrected frame(s) 2 of run {uid} were held out" in warning
