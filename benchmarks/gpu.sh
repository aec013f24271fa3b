#!/usr/bin/env bash
# GPU throughput of masking + masked integration: batch 1/4/16, bf16 and fp16, torch.compile
# on and off, agreement with fp32 and peak GPU memory, in under five minutes on a CUDA machine.
# Usage: bash benchmarks/gpu.sh [--size 2880] [--budget-s 270] [--json gpu.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "benchmarks/gpu.sh: no Python at $PY; build the environment (scripts/setup.sh) or set PYTHON" >&2
    exit 2
fi
exec timeout 300 "$PY" benchmarks/gpu_bench.py "$@"
