"""check_geometry on the real Pilatus frames (whose PONI applies to the image flipped up-down),
on a shifted PONI, and on simulated frames turned every way; Orientation's turns."""

from __future__ import annotations

import numpy as np
import pytest

from tests.real_data import require_real_data
from xrd_bluesky_mask.azimuthal.geometry_check import SHARP, check_geometry
from xrd_bluesky_mask.azimuthal.orientation import (
    AS_GIVEN,
    Orientation,
    candidate_orientations,
)
from xrd_bluesky_mask.errors import ConfigError, GeometryError
from xrd_bluesky_mask.geometry import as_geometry
from xrd_bluesky_mask.io import poni_from_xy_header, read_frame

FLIPUD = Orientation(flipud=True)


@pytest.fixture(scope="module")
def ceo2():
    real = require_real_data()
    frame = read_frame(real / "CeO2_Pilatus1M.tif")
    poni = (real / "CeO2_Pilatus1M.poni").read_text()
    return frame, poni


def test_real_ceo2_unflipped_is_told_to_use_flipud(ceo2) -> None:
    frame, poni = ceo2
    verdict = check_geometry(frame, as_geometry(poni, frame.shape))
    assert verdict.status == "orientation"
    assert verdict.better_orientation == FLIPUD
    assert verdict.best_score > 5 * verdict.score
    warning = verdict.warning()
    assert warning is not None and "use --flipud" in warning


def test_real_ceo2_flipped_passes(ceo2) -> None:
    frame, poni = ceo2
    geometry = as_geometry(poni, frame.shape)
    with_flag = check_geometry(frame, geometry, orientation="flipud")
    assert with_flag.status == "ok" and with_flag.warning() is None
    assert with_flag.score > 0.3
    flipped = check_geometry(np.flipud(frame), geometry)
    assert flipped.status == "ok" and flipped.best == AS_GIVEN
    # the other way round: a flipped file with --flipud is told to drop it
    twice = check_geometry(np.flipud(frame), geometry, orientation=FLIPUD)
    assert twice.status == "orientation"
    assert "drop --flipud" in (twice.warning() or "")


def test_real_ceo2_poni_off_by_a_tenth_of_a_metre_is_flagged(ceo2) -> None:
    frame, poni = ceo2
    shifted = poni.replace("Poni1: 0.0872948482846", "Poni1: 0.1872948482846")
    assert shifted != poni
    verdict = check_geometry(frame, as_geometry(shifted, frame.shape), orientation=FLIPUD)
    assert verdict.status == "no_rings"
    assert not verdict.sharp and verdict.best_score < SHARP
    assert "no orientation of the frame gives sharp rings" in (verdict.warning() or "")


def test_real_ceo2_beam_centre_off_by_6_px_is_flagged(ceo2) -> None:
    frame, poni = ceo2
    shifted = poni.replace("Poni1: 0.0872948482846", "Poni1: 0.0882948482846")  # +1 mm
    verdict = check_geometry(frame, as_geometry(shifted, frame.shape), orientation=FLIPUD)
    assert verdict.status == "centre"
    dy, dx = verdict.centre_shift_px
    assert dy < 0 and abs(dx) <= 3  # back towards the true centre, along rows
    assert "Recalibrate" in (verdict.warning() or "")


@pytest.mark.parametrize("k", [1, 2])
def test_real_fe3o4c_map_frames_weak_rings_and_spots(k: int) -> None:
    real = require_real_data()
    name = f"Fe3O4C_M1_map_{k}_P1_E1_001"
    frame = read_frame(real / f"{name}.tif")
    poni, _ = poni_from_xy_header(real / f"{name}.xy")
    geometry = as_geometry(poni, frame.shape)
    assert check_geometry(frame, geometry).better_orientation == FLIPUD
    assert check_geometry(frame, geometry, orientation=FLIPUD).status == "ok"


@pytest.fixture(scope="module")
def simulated():
    from xrd_bluesky_mask.simulate import preset, simulate_frame

    # beam centre off the middle, so that every flip moves the rings
    cfg = preset("rings_spots", shape=(768, 768)).updated(beam_center_frac=(0.44, 0.57))
    return simulate_frame(cfg, seed=3)


@pytest.mark.parametrize("turn", candidate_orientations((768, 768)), ids=lambda o: o.name)
def test_simulated_frame_turned_any_way_is_found(simulated, turn: Orientation) -> None:
    stored = np.ascontiguousarray(turn.undo(simulated.image))  # the file as written turned
    verdict = check_geometry(stored, simulated.geometry)
    assert verdict.best == turn
    if turn.is_identity:
        assert verdict.status == "ok"
    else:
        assert verdict.status == "orientation"
        assert f"use {turn.flags}" in (verdict.warning() or "")
        assert check_geometry(stored, simulated.geometry, orientation=turn).status == "ok"


def test_many_bright_spots_do_not_change_the_verdict(simulated, rng) -> None:
    image = simulated.image.copy()
    bright = 50 * float(image.max())
    rows, cols = rng.integers(0, 768, 400), rng.integers(0, 768, 400)
    for r, c in zip(rows, cols, strict=True):
        image[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3] += bright
    assert check_geometry(image, simulated.geometry).status == "ok"
    assert check_geometry(np.flipud(image), simulated.geometry).better_orientation == FLIPUD


def test_background_only_frames_get_no_orientation_advice(simulated, rng) -> None:
    tth = simulated.geometry.tth_deg()
    background = rng.poisson(40 + 200 * np.exp(-tth / 6)).astype(np.int32)
    verdict = check_geometry(background, simulated.geometry)
    assert verdict.status == "no_rings"
    assert verdict.better_orientation is None and not verdict.centre_off
    flat = check_geometry(np.full((768, 768), 7.0), simulated.geometry)
    assert flat.status == "no_rings"


def test_frame_that_does_not_fit_the_poni_shape(simulated) -> None:
    with pytest.raises(GeometryError, match="does not match the detector shape"):
        check_geometry(simulated.image[:700], simulated.geometry)


def test_metadata_is_plain_json(simulated) -> None:
    import json

    record = check_geometry(np.flipud(simulated.image), simulated.geometry).as_metadata()
    assert json.loads(json.dumps(record)) == record
    assert record["status"] == "orientation" and record["best_orientation"] == "flipud"


def test_orientation_turns_and_maps_pixels_alike(rng) -> None:
    image = rng.random((5, 7))
    rows, cols = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    for turn in [*candidate_orientations((5, 5)),
                 Orientation(transpose=True, flipud=True, fliplr=True)]:
        turned = turn.apply(image)
        assert turned.shape == turn.shape_of(image.shape)
        np.testing.assert_array_equal(turn.undo(turned), image)
        r, c = turn.map_indices(rows, cols, image.shape)
        np.testing.assert_array_equal(turned[r.astype(int), c.astype(int)], image)
        assert Orientation.parse(turn.name) == turn


def test_orientation_names() -> None:
    assert Orientation.parse("rot180") == Orientation(flipud=True, fliplr=True)
    assert Orientation.parse(None) == AS_GIVEN and AS_GIVEN.flags == ""
    assert Orientation(transpose=True, flipud=True).flags == "--transpose --flipud"
    assert FLIPUD.words == "flipped up-down"
    with pytest.raises(ConfigError, match="unknown orientation"):
        Orientation.parse("upside-down")
