"""The README's first command runs as written on the sample data in the repository, and the
README and docs point only at files a clone has."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import fabio
import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _predict_command() -> list[str]:
    """The README's ``xrd-mask predict sample_data/...`` line, as a user would paste it."""
    (line,) = [ln for ln in README.read_text().splitlines()
               if ln.startswith("xrd-mask predict sample_data/")]
    return shlex.split(line)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(argv[0])  # the checkout's .venv/bin/xrd-mask
    return subprocess.run([str(exe), *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_readme_predict_command_runs_as_written_on_the_sample(tmp_path) -> None:
    """Run from a folder that holds the checkout's sample_data/ (as the checkout does), so the
    outputs go to a temporary masks/ and not into the repository."""
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    argv = _predict_command()
    assert "--flipud" in argv and "--png" in argv
    done = _run(argv, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr
    (row,) = [ln for ln in done.stdout.splitlines() if ln.startswith("CeO2_Pilatus1M_crop.cbf")]
    spots_pct, static_pct = (float(v) for v in row.split()[1:3])
    assert row.rstrip().endswith("flipud")
    # a calibrant: few spots, and the module gaps (-1/-2) static, pixel for pixel
    assert 0.01 < spots_pct < 1.0 and 8.0 < static_pct < 10.0
    out = tmp_path / "masks"
    assert sorted(p.name for p in out.iterdir()) == [
        "CeO2_Pilatus1M_crop.nc", "CeO2_Pilatus1M_crop.xy", "CeO2_Pilatus1M_crop_mask.tif",
        "CeO2_Pilatus1M_crop_overlay.png"]
    raw = fabio.open(str(ROOT / "sample_data" / "CeO2_Pilatus1M_crop.cbf")).data
    codes = tifffile.imread(out / "CeO2_Pilatus1M_crop_mask.tif")
    assert raw.shape == codes.shape == (640, 640) and raw.dtype == np.int32
    np.testing.assert_array_equal(codes == 2, raw < 0)

    # without --flipud, as the README says: refused, exit 1, nothing written
    wrong = [a for a in argv if a != "--flipud"]
    wrong[wrong.index("masks/")] = "wrong/"
    done = _run(wrong, tmp_path)
    assert done.returncode == 1
    assert "refused: the rings are much sharper with the frame flipped up-down" in done.stderr
    assert "use --flipud" in done.stderr
    assert not (tmp_path / "wrong").exists() or not any((tmp_path / "wrong").iterdir())


def test_the_sample_is_small() -> None:
    sizes = {p.name: p.stat().st_size for p in (ROOT / "sample_data").iterdir()}
    assert sum(sizes.values()) < 1_000_000, sizes


def test_readme_and_docs_point_only_inside_the_repository() -> None:
    assert len(README.read_text().splitlines()) <= 250
    for page in [README, *DOCS, ROOT / "sample_data" / "README.md"]:
        text = page.read_text()
        assert "../shared" not in text and "/work/" not in text, page.name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_python_example_of_predicting_files_runs_as_written(monkeypatch) -> None:
    """docs/predicting-files.md's Python block, from the checkout, on the sample frame."""
    import matplotlib

    matplotlib.use("Agg")
    text = (ROOT / "docs" / "predicting-files.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "sample_data" in b]
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(compile(block, "predicting-files.md", "exec"), ns)
    mask, classical, frame = ns["mask"], ns["classical"], ns["frame"]
    assert mask.shape == frame.shape == (640, 640) and mask.dtype == bool
    assert np.all(mask[frame < 0]) and np.all(classical[frame < 0])  # gaps excluded
    assert ns["pattern"].sizes["radial"] > 100
