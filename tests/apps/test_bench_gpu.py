"""benchmarks/gpu.sh: without CUDA it stops with a clear message; its table and options."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run the benchmark")
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], capture_output=True,
                          text=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "torch.cuda.is_available() is False" in done.stderr


def test_every_configuration_and_the_table():
    gb = _gpu_bench()
    configs = gb.configurations()
    assert len(configs) == len(set(configs)) == 12
    assert {b for b, _, _ in configs} == {1, 4, 16} and {p for _, p, _ in configs} == {"bf16",
                                                                                        "fp16"}
    assert [c for _, _, c in configs] == [False] * 6 + [True] * 6  # compiling last
    rows = [gb.Row(4, "bf16", False, 12.5, 30.25, 0.999987, 2048.0),
            gb.Row(16, "fp16", True, note="out of GPU memory")]
    text = gb.table(rows)
    assert "| 4 | bf16 | off | 12.50 | 30.2 | 99.9987 % | 2048 |  |" in text
    assert "| 16 | fp16 | on | – | – | – | – | out of GPU memory |" in text
    args = gb.parse_args(["--size", "512", "--budget-s", "60"])
    assert (args.size, args.frames, args.budget_s) == (512, 4, 60.0)
    with pytest.raises(SystemExit):
        gb.parse_args(["--size", "8"])
