"""The per-machine engine choice: measured once, cached per machine and model, forced on
request, and never an engine whose masks disagree with fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xrd_bluesky_mask.masking import engines
from xrd_bluesky_mask.masking.engines import (
    MIN_AGREEMENT,
    EngineChoice,
    cache_file,
    check_frame,
    choice_key,
    machine_facts,
    measure_engines,
)
from xrd_bluesky_mask.masking.unet import UNetMasker

from .frames import ring_frame


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines.json"


def test_first_use_measures_then_the_cache_answers(tiny_model_dir, cache):
    first = UNetMasker(tiny_model_dir, device="cpu")
    choice = first.engine_choice()
    assert choice.source == "measured" and cache_file() == cache
    assert [t.engine for t in choice.timings] == ["fp32", "bf16", "bf16-fused"]
    assert sum(t.note == "chosen" for t in choice.timings) == 1
    chosen = next(t for t in choice.timings if t.note == "chosen")
    assert chosen.engine == choice.engine and chosen.ms is not None and chosen.ms > 0
    assert chosen.engine == "fp32" or (chosen.agreement or 0.0) >= MIN_AGREEMENT
    assert first.precision == choice.engine and first.settings()["precision"] == choice.engine
    stored = json.loads(cache.read_text())
    assert list(stored) == [choice.key] and stored[choice.key]["engine"] == choice.engine
    assert stored[choice.key]["machine"]["torch"] == torch.__version__

    again = UNetMasker(tiny_model_dir, device="cpu").engine_choice()
    assert again.source == "cached" and again.engine == choice.engine
    assert [t.engine for t in again.timings] == [t.engine for t in choice.timings]
    assert "cached" in again.describe() and "| fp32 |" in again.table()


def test_forced_precision_is_used_and_nothing_is_measured(tiny_model_dir, cache,
                                                          small_geometry, rng):
    forced = UNetMasker(tiny_model_dir, device="cpu", precision="bf16")
    assert forced.engine_choice().source == "forced" and forced.precision == "bf16"
    frame, _ = ring_frame(small_geometry, rng, spots=[(80, 90, 2.0, 4000.0)])
    bf16 = forced.predict(frame, small_geometry)
    fp32 = UNetMasker(forced.model, precision="fp32").predict(frame, small_geometry)
    assert not cache.exists()
    # the same network in bf16: probabilities close, not identical
    assert bf16.probability is not None and fp32.probability is not None
    assert 0 < np.abs(bf16.probability - fp32.probability).max() < 0.05
    with pytest.raises(ValueError, match="precision"):
        UNetMasker(tiny_model_dir, precision="int8")


def test_an_engine_that_disagrees_or_fails_is_never_chosen(tiny_model_dir):
    masker = UNetMasker(tiny_model_dir, device="cpu", precision="fp32")
    net = masker.network("fp32")

    def run(engine: str, x: torch.Tensor) -> torch.Tensor:
        if engine == "broken":
            raise RuntimeError("no kernels for this engine here\nsecond line")
        logits = masker.predictor(x, net)
        return -logits if engine == "inverted" else logits

    frame, geometry = check_frame(128)
    _, static, x = masker.inputs(frame, geometry)

    def check_x():
        return torch.from_numpy(x)[None], torch.from_numpy(static)[None]

    timings = measure_engines(run, ("fp32", "inverted", "broken"), torch.randn(1, 4, 64, 64),
                              check_x, masker.logit_cut, repeats=1, check_all=True)
    by = {t.engine: t for t in timings}
    assert by["fp32"].note == "chosen" and by["fp32"].agreement == 1.0
    assert by["inverted"].note == "disagrees"
    inverted = by["inverted"].agreement
    assert inverted is not None and inverted < MIN_AGREEMENT
    assert by["broken"].note == "unavailable: no kernels for this engine here"
    assert by["broken"].ms is None


def test_the_key_changes_with_the_model_and_the_machine(tiny_model_dir, cache):
    facts = machine_facts(torch.device("cpu"))
    assert facts["device"] == "cpu" and facts["cpu"] and len(facts["cpu_flags_sha"]) == 16
    key = choice_key(facts, "a" * 64, "m")
    assert key == choice_key(dict(facts), "a" * 64, "m")
    assert key != choice_key(facts, "b" * 64, "m")
    assert key != choice_key({**facts, "torch": "0.0"}, "a" * 64, "m")
    assert key != choice_key({**facts, "cpu_flags_sha": "0" * 16}, "a" * 64, "m")


def test_an_unreadable_cache_is_measured_again(tiny_model_dir, cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    choice = UNetMasker(tiny_model_dir, device="cpu").engine_choice()
    assert choice.source == "measured"
    assert json.loads(cache.read_text())[choice.key]["engine"] == choice.engine
    assert engines.cached_choice("no such key") is None


def test_check_frame_is_the_same_everywhere_and_has_spots():
    a, geometry = check_frame(256)
    b, _ = check_frame(256)
    np.testing.assert_array_equal(a, b)
    assert a.shape == geometry.shape == (256, 256) and a.max() > 20 * np.median(a)


def test_describe_names_every_engine():
    choice = EngineChoice("fp32", "k", "measured", [
        engines.EngineTiming("fp32", 10.0, 1.0, "chosen"),
        engines.EngineTiming("bf16", 50.0, None, "slower")])
    text = choice.describe()
    assert "engine fp32 (measured" in text and "bf16 50 ms" in text and "slower" in text
