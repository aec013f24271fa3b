"""scripts/setup.sh: clones with the same pins share the heavy venv but each runs its own code."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_from(checkout: Path) -> Path:
    out = subprocess.run(
        [str(checkout / ".venv/bin/python"), "-c",
         "import xrd_bluesky_mask; print(xrd_bluesky_mask.__file__)"],
        cwd="/", capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()).resolve()


def _command_imports_from(checkout: Path) -> Path:
    """The package as a console script of the shared venv (pytest) sees it in ``checkout``."""
    out = subprocess.run(
        [str(checkout / ".venv/bin/pytest"), "--version"], cwd="/",
        capture_output=True, text=True, check=True)
    assert "pytest" in out.stdout + out.stderr
    script = (checkout / ".venv/bin/pytest").read_text().splitlines()[0]
    return Path(script.removeprefix("#!")).resolve()


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout to clone")
def test_second_clone_does_not_take_over_the_first(tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(other)], check=True)
    subprocess.run(["bash", "scripts/setup.sh"], cwd=other, check=True,
                   capture_output=True, text=True)

    assert _imported_from(other) == other / "xrd_bluesky_mask" / "__init__.py"
    assert _imported_from(ROOT) == ROOT / "xrd_bluesky_mask" / "__init__.py"
    assert _command_imports_from(other) == (other / ".venv/bin/python").resolve()
    assert (ROOT / ".venv").resolve() != (other / ".venv").resolve()
    shared = (ROOT / ".venv/.shared").read_text().strip()
    assert (other / ".venv/.shared").read_text().strip() == shared
