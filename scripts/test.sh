#!/usr/bin/env bash
# Install what is needed (or reuse the venv) and run the checks: ruff, the layer contracts
# (import-linter), the types (basedpyright), the documentation site (Sphinx, warnings as
# errors, into build/docs), then the whole test suite in two processes (pytest-xdist: half of its
# time is waiting on servers, outages and subprocesses; `bash scripts/test.sh -n 0` runs it in
# one, `-n 4` in four; other pytest arguments pass through).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache
.venv/bin/basedpyright --project pyproject.toml
.venv/bin/python -m sphinx -W --keep-going -q -b html docs build/docs
.venv/bin/python -m pytest -n 2 "$@"
