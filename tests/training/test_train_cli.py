"""`xrd-mask train` end to end: from simulated frames, and from image + mask files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from xrd_bluesky_mask.cli import main
from xrd_bluesky_mask.errors import FrameError
from xrd_bluesky_mask.io import write_mask_tiff
from xrd_bluesky_mask.models import read_card
from xrd_bluesky_mask.models.network import NetworkConfig
from xrd_bluesky_mask.protocols import encode_mask as mask_codes
from xrd_bluesky_mask.simulate import preset, simulate_frame
from xrd_bluesky_mask.training.files import tiles_from_files
from xrd_bluesky_mask.training.loop import TrainConfig


def test_train_on_simulated_frames(tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "--out", str(out), "--frames", "3", "--size", "256", "--epochs", "1",
               "--batch-size", "2", "--model-id", "sim-test", "--seed", "7"])
    assert rc == 0
    card = read_card(out / "best")
    assert card.model_id == "sim-test" and card.architecture.depth == 4
    assert card.training["data"]["source"] == "simulator"
    assert card.training["command"].startswith("xrd-mask train --out")
    assert (out / "train.log").exists() and list(out.glob("tiles-3-256-7.pt"))
    config = card.training["config"]  # options not given: TrainConfig's defaults
    default = TrainConfig()
    assert (config["lr"], config["lr_schedule"], config["class_weights"]) == (
        default.lr, default.lr_schedule, list(default.class_weights))


def test_ring_width_and_bf16_training_reach_the_card_and_the_masker(tmp_path):
    """A model trained on rings of 0.5 px with bf16 autocast records both; its masker builds
    its input from rings of that width, and a fine-tuning run from it keeps the width."""
    from xrd_bluesky_mask.masking.unet import UNetMasker

    out = tmp_path / "fine"
    assert main(["train", "--out", str(out), "--frames", "2", "--size", "256", "--epochs", "1",
                 "--batch-size", "2", "--seed", "3", "--ring-bin-px", "0.5",
                 "--precision", "bf16", "--scenes", "v4"]) == 0
    card = read_card(out / "best")
    assert card.input.ring_bin_px == 0.5 and card.training["config"]["precision"] == "bf16"
    assert list(out.glob("tiles-2-256-3-v4-bin0.5.pt"))
    sim = simulate_frame(preset("rings_spots", shape=(256, 256)), seed=4)
    _, _, _, stats = UNetMasker(out / "best", device="cpu").inputs_and_stats(sim.image,
                                                                              sim.geometry)
    width_px = stats.ring.bins.bin_width_deg / sim.geometry.tth_per_pixel_deg()
    assert width_px == pytest.approx(0.5) and not stats.same_bins
    # the base model's decision step travels with its weights into the new cards
    card_file = out / "best" / "model_card.json"
    card_json = json.loads(card_file.read_text())
    card_json["decision"] = {"extreme_z": 40.0, "extreme_ratio": 30.0, "level": "local"}
    card_file.write_text(json.dumps(card_json))
    again = tmp_path / "again"
    assert main(["train", "--out", str(again), "--frames", "2", "--size", "256", "--epochs",
                 "1", "--batch-size", "2", "--seed", "3", "--init", str(out / "best")]) == 0
    assert read_card(again / "best").input.ring_bin_px == 0.5
    assert read_card(again / "best").decision == read_card(out / "best").decision
    assert read_card(again / "best").decision["extreme_z"] == 40.0


def test_channels_added_to_a_four_channel_model(tmp_path, tiny_model_dir, capsys):
    """``--coarse-ring-bin-px`` and ``--blob-sigmas-px`` on a four-channel ``--init`` model:
    the fine-tuned card reads six channels, its network takes six, and its masker masks a
    frame from six; a model cannot be fine-tuned without the channels it reads."""
    from xrd_bluesky_mask.masking.unet import UNetMasker

    out = tmp_path / "dual"
    assert main(["train", "--out", str(out), "--frames", "2", "--size", "256", "--epochs", "1",
                 "--batch-size", "2", "--seed", "3", "--ring-bin-px", "0.5",
                 "--coarse-ring-bin-px", "2", "--blob-sigmas-px", "1", "3", "--scenes", "v4",
                 "--init", str(tiny_model_dir)]) == 0
    card = read_card(out / "best")
    assert card.input.ring_bin_px == 0.5 and card.input.coarse_ring_bin_px == 2.0
    assert card.input.blob_sigmas_px == [1.0, 3.0]
    assert card.input.channels[-2:] == ["coarse_ring_excess", "blob_excess"]
    assert card.architecture.in_channels == 6 and card.architecture.depth == 2
    assert list(out.glob("tiles-2-256-3-v4-bin0.5-coarse2-blob1_3.pt"))
    masker = UNetMasker(out / "best", device="cpu")
    sim = simulate_frame(preset("rings_spots", shape=(256, 256)), seed=4)
    _, _, x = masker.inputs(sim.image, sim.geometry)
    assert x.shape == (6, 256, 256)
    assert masker.predict(sim.image, sim.geometry).spots.shape == (256, 256)
    # a model reading the blob channel fifth: the coarse channel cannot come before it
    from xrd_bluesky_mask.models import ModelCard, save_model
    from xrd_bluesky_mask.models.card import InputSpec
    from xrd_bluesky_mask.models.network import build_network

    blob_cfg = NetworkConfig(depth=2, base_channels=4, in_channels=5)
    blob_only = save_model(build_network(blob_cfg), ModelCard(
        model_id="blob", architecture=blob_cfg, input=InputSpec(blob_sigmas_px=[1.0])),
        tmp_path / "blob-only")
    assert main(["train", "--out", str(tmp_path / "reordered"), "--frames", "2", "--size",
                 "256", "--epochs", "1", "--batch-size", "2", "--seed", "3",
                 "--coarse-ring-bin-px", "4", "--init", str(blob_only)]) == 2
    assert "fine-tuning keeps them and may add channels after them" in capsys.readouterr().err
    assert not (tmp_path / "reordered" / "best").exists()


def test_a_widened_network_starts_as_its_parent():
    """Zero weights on the new input channel: the five-channel network's output is the
    four-channel one's whatever the new channel holds, and training reaches those weights."""
    import torch

    from xrd_bluesky_mask.models.network import build_network
    from xrd_bluesky_mask.training.run import widen_input

    torch.manual_seed(0)
    four = build_network(NetworkConfig(depth=2, base_channels=4)).eval()
    five = build_network(NetworkConfig(depth=2, base_channels=4, in_channels=5)).eval()
    five.load_state_dict(widen_input(four.state_dict(), five.state_dict()))
    x = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(five(x), four(x[:, :4]))
        torch.testing.assert_close(five(torch.cat([x[:, :4], x[:, 4:] + 1], 1)), five(x))
    first = next(w for w in five.parameters() if w.ndim == 4 and w.shape[1] == 5)
    assert not first[:, 4].any()
    five.train()
    five(x)[:, 1].mean().backward()
    assert first.grad is not None and first.grad[:, 4].abs().sum() > 0
    # shared: half of ring_excess's weights on the new channel; the same output where the two
    # ring excesses agree, their mean's where they differ
    five.load_state_dict(widen_input(four.state_dict(), five.state_dict(), share=1))
    five.eval()
    with torch.no_grad():
        torch.testing.assert_close(five(torch.cat([x[:, :4], x[:, 1:2]], 1)), four(x[:, :4]))
        mean = x[:, :4].clone()
        mean[:, 1] = (x[:, 1] + x[:, 4]) / 2
        torch.testing.assert_close(five(x), four(mean))
    with pytest.raises(ValueError, match="cannot start"):
        widen_input(build_network(NetworkConfig(depth=2, base_channels=8)).state_dict(),
                    five.state_dict())


@pytest.mark.parametrize(("option", "default"), [
    ("--epochs EPOCHS", lambda: TrainConfig().epochs),
    ("--spot-weight SPOT_WEIGHT", lambda: f"{TrainConfig().class_weights[1]:g}"),
    ("--depth DEPTH", lambda: NetworkConfig().depth),
    ("--frames FRAMES", lambda: 32),
])
def test_help_shows_the_defaults_of_the_training_config(capsys, option, default):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # help lines are wrapped
    assert f"{option} " in text
    entry, _, rest = text.split(f"{option} ", 1)[1].partition("(default: ")
    assert not re.search(r"--[a-z-]+ [A-Z_]+", entry)  # still this option's help
    assert rest.split(")", 1)[0] == str(default())


@pytest.fixture
def labelled_files(tmp_path):
    sim = simulate_frame(preset("rings_spots", shape=(256, 256)), seed=2)
    np.save(tmp_path / "f0.npy", sim.image)
    write_mask_tiff(tmp_path / "m0.tif", mask_codes(sim.labels, sim.static_mask))
    poni = tmp_path / "d.poni"
    poni.write_text(sim.geometry.poni_text)
    return tmp_path / "f0.npy", tmp_path / "m0.tif", poni, sim


def test_tiles_from_files_use_mask_codes(labelled_files):
    img, msk, poni, sim = labelled_files
    ts = tiles_from_files([img], [msk], poni)
    assert len(ts) == 1
    y = ts.y[0].numpy()
    assert ((y == 1) == (sim.labels & ~sim.static_mask)).all()
    assert (y[sim.static_mask] == -1).all()
    with pytest.raises(FrameError, match="pair them"):
        tiles_from_files([img, img], [msk], poni)
    np.save(img.parent / "small.npy", np.ones((128, 128), np.float32))
    with pytest.raises(FrameError, match="pixel for pixel"):
        tiles_from_files([img.parent / "small.npy"], [msk], poni)


def test_fine_tune_from_files(labelled_files, tiny_model_dir, tmp_path):
    img, msk, poni, _ = labelled_files
    out = tmp_path / "ft"
    rc = main(["train", "--out", str(out), "--images", str(img), str(img), "--masks", str(msk),
               str(msk), "--poni", str(poni), "--init", str(tiny_model_dir), "--epochs", "2",
               "--batch-size", "2", "--model-id", "ft-test"])
    assert rc == 0
    card = read_card(out / "best")
    assert card.parent == "tiny-untrained" and card.architecture.depth == 2
    assert card.training["data"]["source"] == "files"


def test_distil_a_lighter_network_from_files(labelled_files, tiny_model_dir, tmp_path):
    img, msk, poni, _ = labelled_files
    out = tmp_path / "light"
    rc = main(["train", "--out", str(out), "--images", str(img), str(img), "--masks",
               str(msk), str(msk), "--poni", str(poni), "--teacher", str(tiny_model_dir),
               "--distill-weight", "2",
               "--depth", "3", "--base-channels", "2", "--epochs", "1", "--batch-size", "2",
               "--model-id", "light-test"])
    assert rc == 0
    card = read_card(out / "best")
    assert (card.architecture.depth, card.architecture.base_channels) == (3, 2)
    assert card.training["data"]["teacher"]["model_id"] == "tiny-untrained"
    assert card.training["config"]["distill_weight"] == 2.0 and card.parent is None


def test_fine_tuning_keeps_the_architecture(labelled_files, tiny_model_dir, tmp_path, capsys):
    img, msk, poni, _ = labelled_files
    rc = main(["train", "--out", str(tmp_path / "x"), "--images", str(img), "--masks", str(msk),
               "--poni", str(poni), "--init", str(tiny_model_dir), "--base-channels", "16",
               "--epochs", "1"])
    assert rc != 0 and "fine-tuning keeps it" in capsys.readouterr().err
    assert not (tmp_path / "x" / "best").exists()


def test_prune_teacher_starts_from_its_channels(labelled_files, tiny_model_dir, tmp_path, capsys):
    img, msk, poni, _ = labelled_files
    common = ["--images", str(img), str(img), "--masks", str(msk), str(msk), "--poni",
              str(poni), "--epochs", "1", "--batch-size", "2"]
    out = tmp_path / "pruned"
    assert main(["train", "--out", str(out), *common, "--teacher", str(tiny_model_dir),
                 "--prune-teacher", "--base-channels", "2"]) == 0
    card = read_card(out / "best")
    assert card.architecture.base_channels == 2 and card.architecture.depth == 2
    assert card.training["data"]["teacher"]["init"].startswith("pruned")
    assert main(["train", "--out", str(tmp_path / "no"), *common, "--prune-teacher"]) != 0
    assert "needs --teacher" in capsys.readouterr().err
