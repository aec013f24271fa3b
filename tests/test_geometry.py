"""PONI text that cannot be used: every unparsable value named with its key, missing keys."""

from __future__ import annotations

import pytest

from xrd_bluesky_mask.errors import GeometryError
from xrd_bluesky_mask.geometry import as_geometry, make_geometry, poni_text_from


@pytest.fixture(scope="module")
def poni_text() -> str:
    return make_geometry((64, 48), pixel_size_m=100e-6, distance_m=0.2).poni_text


def _with(text: str, key: str, value: str | None) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
    return "\n".join(lines + ([f"{key}: {value}"] if value is not None else [])) + "\n"


def test_a_distance_that_is_not_a_number_is_named_with_its_key(poni_text, tmp_path):
    poni = tmp_path / "bad.poni"
    poni.write_text(_with(poni_text, "Distance", "abc"))
    with pytest.raises(GeometryError) as info:
        as_geometry(poni, (64, 48))
    message = str(info.value)
    assert f"the PONI from {poni} cannot be used: Distance: 'abc' is not a number (expected m)" \
        in message
    assert "Poni2" not in message and "does not look like" not in message


def test_every_problem_is_reported_together(poni_text):
    text = _with(_with(_with(poni_text, "Distance", "abc"), "Rot1", "1,5"), "Poni2", None)
    with pytest.raises(GeometryError) as info:
        as_geometry(text, (64, 48), source="det.poni")
    message = str(info.value)
    assert "Distance: 'abc' is not a number (expected m)" in message
    assert "Rot1: '1,5' is not a number (expected rad)" in message
    assert "it has no Poni2, so it does not look like a pyFAI PONI file" in message


def test_a_valid_poni_still_builds(poni_text):
    assert as_geometry(poni_text, (64, 48)).integrator.dist == pytest.approx(0.2)


def test_a_poni_given_as_text_path_or_geometry_becomes_the_same_text(poni_text, tmp_path):
    path = tmp_path / "det.poni"
    path.write_text(poni_text)
    geometry = as_geometry(poni_text, (64, 48))
    assert poni_text_from(poni_text) == poni_text_from(path) == poni_text_from(str(path))
    assert poni_text_from(geometry) == geometry.poni_text
    assert poni_text_from(None) is None
    with pytest.raises(GeometryError, match="missing.poni' not found"):
        poni_text_from(tmp_path / "missing.poni")
