#!/usr/bin/env bash
# Install what is needed (or reuse the venv) and run the checks: ruff, then the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
