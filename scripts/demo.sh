#!/usr/bin/env bash
# Install what is needed (or reuse the venv) and run the demo: simulated frames through the
# whole pipeline. Extra arguments go to `xrd-mask demo` (see `xrd-mask demo --help`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/xrd-mask" demo "$@"
