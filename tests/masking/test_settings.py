"""The U-Net's options as one model, validated once, shared by the masker and the CLI."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from xrd_bluesky_mask.commands._options import UNET_OPTIONS, add_masker, settings_from_options
from xrd_bluesky_mask.errors import ConfigError
from xrd_bluesky_mask.masking.settings import UNetSettings
from xrd_bluesky_mask.masking.unet import UNetMasker
from xrd_bluesky_mask.protocols import PRECISIONS


def test_the_model_refuses_what_the_masker_cannot_run():
    with pytest.raises(ValidationError, match=r"must be in \(0, 1\)"):
        UNetSettings(threshold=1.5)
    with pytest.raises(ValidationError, match="needs inference='halo'"):
        UNetSettings(inference="quilt", candidates="on")
    with pytest.raises(ValidationError, match="precision"):
        UNetSettings.model_validate({"precision": "fp64"})
    with pytest.raises(ValidationError, match="window"):
        UNetSettings(window=0)
    for precision in PRECISIONS:  # the names ExecutionPolicy takes too
        assert UNetSettings.model_validate({"precision": precision}).precision == precision


def test_the_masker_runs_with_the_settings_it_is_given(tiny_model_dir):
    settings = UNetSettings(threshold=0.3, inference="quilt", device="cpu")
    masker = UNetMasker(tiny_model_dir, settings=settings)
    assert masker.options is settings
    assert masker.threshold == 0.3 and masker.inference == "quilt"
    assert UNetMasker(tiny_model_dir, threshold=0.3, inference="quilt",
                      device="cpu").options == settings  # keywords: the same model


def test_the_cli_builds_the_same_model_and_names_the_option():
    parser = argparse.ArgumentParser()
    add_masker(parser)
    args = parser.parse_args(["--threshold", "0.4", "--candidate-tiles", "fast"])
    settings = settings_from_options(UNetSettings, args, UNET_OPTIONS)
    assert settings == UNetSettings(threshold=0.4, candidates="fast")
    bad = parser.parse_args(["--inference", "quilt", "--candidate-tiles", "on"])
    with pytest.raises(ConfigError, match="needs inference='halo'"):
        settings_from_options(UNetSettings, bad, UNET_OPTIONS)
