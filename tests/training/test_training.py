"""Tiles, the training loop (checkpoint + resume), the operating point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xrd_bluesky_mask.models import load_model
from xrd_bluesky_mask.models.network import NetworkConfig
from xrd_bluesky_mask.training import TileSet, TrainConfig, operating_point, tiles_from_pair, train
from xrd_bluesky_mask.training.dataset import IGNORE
from xrd_bluesky_mask.training.loop import lr_scheduler

TINY = NetworkConfig(depth=2, base_channels=4)


def test_tiles_keep_every_spot_tile_sorted_and_ignore_static(rng):
    x = rng.normal(size=(2, 512, 512)).astype(np.float32)
    labels = np.zeros((512, 512), bool)
    labels[10:20, 10:20] = True  # tile (0, 0): 100 px
    labels[300:302, 400:402] = True  # tile (1, 1): 4 px
    static = np.zeros((512, 512), bool)
    static[0:5, :] = True
    ts = tiles_from_pair(x, labels, static, window=256, step=256, negative_keep=0.5, rng=rng)
    frac = ts.spot_fraction
    assert len(ts) == 3  # 2 spot tiles + half of the 2 spot-free tiles
    assert frac[0] > frac[1] > 0 and frac[2] == 0
    assert (ts.y[0, 0:5] == IGNORE).all() and ts.y.dtype == torch.int8
    assert ts.x.dtype == torch.float16  # half the memory; float32 per batch
    np.testing.assert_allclose(ts.x[0].float().numpy(), x[:, :256, :256], rtol=1e-3, atol=1e-4)


def test_operating_point_hits_the_target_tnr():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(100_000, generator=g) < 0.01).long()
    prob = torch.where(y == 1, 0.6 + 0.4 * torch.rand(100_000, generator=g),
                       0.7 * torch.rand(100_000, generator=g))
    pt = operating_point(prob, y, 0.998)
    assert abs(pt["tnr"] - 0.998) < 5e-4
    assert 0.69 < pt["threshold"] < 0.7 and pt["recall"] > 0.2


def _toy_tiles(n=24, size=64, seed=0):
    """Bright 3x3 blobs on noise: a task a tiny U-Net learns in a few epochs."""
    g = np.random.default_rng(seed)
    x = g.normal(0, 0.3, size=(n, 4, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.int8)
    for i in range(n):
        for _ in range(4):
            r, c = g.integers(3, size - 3, 2)
            x[i, :, r - 1 : r + 2, c - 1 : c + 2] += 2.0
            y[i, r - 1 : r + 2, c - 1 : c + 2] = 1
    return TileSet(torch.from_numpy(x), torch.from_numpy(y))


def test_train_learns_checkpoints_and_resumes(tmp_path):
    tiles = _toy_tiles()
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, architecture=TINY, target_tnr=0.99)
    res = train(tiles, tmp_path, cfg, model_id="toy", progress=False)
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4, 5, 6]
    assert max(h["val_recall"] for h in res.history) > 0.8
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "history.json").exists()
    loaded = load_model(res.model_dir, device="cpu")
    assert loaded.card.model_id == "toy" and loaded.card.training["epochs_trained"] >= 1
    assert 0 < loaded.card.threshold < 1
    last = load_model(tmp_path / "last", device="cpu")
    assert last.card.training["epochs_trained"] == 6
    # resuming with more epochs continues from epoch 7, keeping the history
    more = train(tiles, tmp_path, cfg.model_copy(update={"epochs": 8}), model_id="toy",
                 progress=False)
    assert [h["epoch"] for h in more.history] == list(range(1, 9))
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 8


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_checkpoint_loads_with_weights_only(tmp_path, schedule):
    cfg = TrainConfig(epochs=2, batch_size=4, architecture=TINY, lr_schedule=schedule)
    train(_toy_tiles(8), tmp_path, cfg.model_copy(update={"epochs": 1}), progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"model", "optim", "history"}
    resumed = train(_toy_tiles(8), tmp_path, cfg, progress=False)  # loads the checkpoint
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_train_config_rejects_unknown_keys():
    with pytest.raises(ValueError):
        TrainConfig(epoch=3)


def test_distillation_loss_is_bce_on_labelled_pixels():
    from xrd_bluesky_mask.training.loop import _distill_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, generator=g)
    soft = torch.rand(2, 8, 8, generator=g)
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[0, :4] = IGNORE
    keep = y != IGNORE
    margin = logits[:, 1] - logits[:, 0]
    p = torch.sigmoid(margin[keep])
    manual = -(soft[keep] * torch.log(p) + (1 - soft[keep]) * torch.log(1 - p)).mean()
    assert abs(float(_distill_loss(logits, soft, y)) - float(manual)) < 1e-5


def test_student_learns_the_teachers_answer(tmp_path):
    tiles = _toy_tiles()
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, architecture=TINY, target_tnr=0.99)
    teacher = load_model(train(tiles, tmp_path / "teacher", cfg, progress=False).model_dir,
                         device="cpu").net.eval()
    student_cfg = cfg.model_copy(update={
        "architecture": NetworkConfig(depth=2, base_channels=2), "distill_weight": 5.0})
    from xrd_bluesky_mask.training.loop import predict_tiles

    target = predict_tiles(teacher, tiles.x, "cpu")
    gaps = {}
    for name, t in (("alone", None), ("distilled", teacher)):
        res = train(tiles, tmp_path / name, student_cfg, teacher=t, progress=False)
        student = load_model(res.model_dir, device="cpu").net
        gaps[name] = float((predict_tiles(student, tiles.x, "cpu") - target).abs().mean())
    assert gaps["distilled"] < 0.8 * gaps["alone"], gaps


def test_operating_point_keeps_the_target_tnr_when_negatives_tie():
    # 1 % of the negatives share one value at the target quantile (a constant output)
    g = torch.Generator().manual_seed(1)
    neg = torch.rand(99_000, generator=g) * 0.3
    neg[:1_000] = 0.3
    prob = torch.cat([neg, 0.29 + 0.7 * torch.rand(1_000, generator=g)])
    y = torch.cat([torch.zeros(99_000), torch.ones(1_000)]).long()
    pt = operating_point(prob, y, 0.995)
    assert pt["tnr"] >= 0.995 and pt["threshold"] > 0.3
    assert 0.95 < pt["recall"] < 1.0


def test_resumes_a_checkpoint_with_numpy_learning_rates(tmp_path):
    # checkpoints of earlier versions stored the cosine schedule's lr as numpy.float64
    cfg = TrainConfig(epochs=2, batch_size=4, architecture=TINY)
    train(_toy_tiles(8), tmp_path, cfg.model_copy(update={"epochs": 1}), progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["optim"]["param_groups"][0]["lr"] = np.float64(5e-3)
    torch.save(state, tmp_path / "checkpoint.pt")
    resumed = train(_toy_tiles(8), tmp_path, cfg, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def _cosine_lr_before_the_scheduler(cfg: TrainConfig, epoch: int) -> float:
    """The lr the loop set by hand before it used torch's LambdaLR (its expression, verbatim)."""
    frac = epoch / max(cfg.epochs - 1, 1)
    return float(cfg.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * frac))))


def _lrs(cfg: TrainConfig, start: int, stale_lr: float | None = None) -> list[float]:
    """The lr of epochs ``start``.. from `lr_scheduler`, stepped as `train` steps it; with
    ``stale_lr`` the optimiser is a resumed one (that lr, no ``initial_lr``)."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    if stale_lr is not None:
        opt.param_groups[0]["lr"] = stale_lr
    scheduler = lr_scheduler(opt, cfg, start)
    out = []
    for _ in range(start, cfg.epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("epochs", [1, 2, 7, 20])
def test_cosine_schedule_is_the_formula_and_resumes_at_any_epoch(epochs):
    cfg = TrainConfig(epochs=epochs, lr=3e-3, lr_schedule="cosine")
    expected = [_cosine_lr_before_the_scheduler(cfg, e) for e in range(epochs)]
    lrs = _lrs(cfg, 0)
    assert lrs == expected and all(type(lr) is float for lr in lrs)  # exactly, Python floats
    assert lrs[0] == cfg.lr and (epochs == 1 or lrs[-1] == pytest.approx(cfg.lr / 100))
    for start in range(1, epochs):
        assert _lrs(cfg, start, stale_lr=expected[start - 1]) == expected[start:]
    assert lr_scheduler(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]),
                        cfg.model_copy(update={"lr_schedule": "constant"})) is None


@pytest.mark.parametrize("checkpoint", ["as written now", "as written before the scheduler"])
def test_interrupted_cosine_run_resumes_on_the_same_schedule(tmp_path, checkpoint):
    cfg = TrainConfig(epochs=4, batch_size=4, lr=3e-3, lr_schedule="cosine", architecture=TINY)
    first = train(_toy_tiles(8), tmp_path, cfg.model_copy(update={"max_minutes": 1e-9}),
                  progress=False)
    assert len(first.history) == 1  # stopped after epoch 1 of 4
    if checkpoint != "as written now":
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        for group in state["optim"]["param_groups"]:
            del group["initial_lr"]
            group["lr"] = first.history[-1]["lr"]
        torch.save(state, tmp_path / "checkpoint.pt")
    resumed = train(_toy_tiles(8), tmp_path, cfg, progress=False)
    assert [h["lr"] for h in resumed.history] == [
        _cosine_lr_before_the_scheduler(cfg, e) for e in range(4)]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"model", "optim", "history"}


def test_hard_tiles_are_drawn_where_the_starting_network_is_wrong(tmp_path):
    """Tiles the starting network gets wrong are drawn more often: a share of the epoch in
    proportion to their wrong pixels, the rest once each; without starting weights it is an
    error, and without hard tiles every tile comes once."""
    from xrd_bluesky_mask.errors import ModelError
    from xrd_bluesky_mask.training.loop import epoch_order, tile_errors

    g = torch.Generator().manual_seed(0)
    errors = torch.zeros(100)
    errors[:5] = 50.0  # five hard tiles
    order = epoch_order(100, g, errors, 0.5)
    assert len(order) == 100
    counts = torch.bincount(order, minlength=100)
    assert int(counts[:5].sum()) >= 50  # the hard half went to the five wrong tiles
    assert sorted(epoch_order(100, g, None, 0.5).tolist()) == list(range(100))
    assert sorted(epoch_order(100, g, errors, 0.0).tolist()) == list(range(100))

    tiles = _toy_tiles(n=12, size=64)
    first = train(tiles, tmp_path / "a", TrainConfig(epochs=1, batch_size=4, architecture=TINY),
                  progress=False)
    net = load_model(first.model_dir).net
    wrong = tile_errors(net, tiles, "cpu")
    assert wrong.shape == (12,) and (wrong >= 0).all()
    blank = TileSet(tiles.x[:2] * 0, torch.zeros_like(tiles.y[:2]))
    assert tile_errors(net, blank, "cpu", threshold=1.1).sum() == 0  # nothing predicted, no spot
    # hard negatives: a network that calls every pixel a spot is wrong only where none is
    labelled = (tiles.y == 1).flatten(1).sum(1).float()
    unlabelled = (tiles.y == 0).flatten(1).sum(1).float()
    everything = tile_errors(net, tiles, "cpu", threshold=0.0, kind="false_positives")
    assert torch.equal(everything, unlabelled) and (unlabelled > 0).any()
    assert torch.equal(tile_errors(net, tiles, "cpu", threshold=0.0), unlabelled)
    assert torch.equal(tile_errors(net, tiles, "cpu", threshold=1.1), labelled)  # all missed
    assert tile_errors(net, tiles, "cpu", threshold=1.1, kind="false_positives").sum() == 0
    cfg = TrainConfig(epochs=1, batch_size=4, architecture=TINY, hard_fraction=0.5)
    run = train(tiles, tmp_path / "b", cfg, init_state=net.state_dict(), progress=False)
    assert (tmp_path / "b" / "tile-errors.pt").exists() and run.card.training["config"][
        "hard_fraction"] == 0.5
    with pytest.raises(ModelError, match="--init"):
        train(tiles, tmp_path / "c", cfg, progress=False)
    negatives = cfg.model_copy(update={"hard_errors": "false_positives"})
    run = train(tiles, tmp_path / "d", negatives, init_state=net.state_dict(), progress=False)
    assert (tmp_path / "d" / "tile-errors-false_positives.pt").exists()  # beside "all"'s
    assert run.card.training["config"]["hard_errors"] == "false_positives"
