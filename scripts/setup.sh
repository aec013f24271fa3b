#!/usr/bin/env bash
# Build (or reuse) the project's virtual environment and install the package into it.
#
# The venv lives outside the checkout, named by a hash of requirements/*.txt, so a fresh
# clone with unchanged pins reuses it (no 5 GB re-download); changed pins build a new one.
# Override the location with XRD_MASK_VENV=/path. `.venv` in the checkout links to it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || py=python3
pins=$(cat requirements/runtime.txt requirements/nodeps.txt requirements/test.txt | sha256sum | cut -c1-12)
venv=${XRD_MASK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xrd-bluesky-mask/venv-$pins}
if [ ! -f "$venv/.complete" ]; then
    echo "setup: building $venv (first run with these pins: about 3 minutes, 6 GB)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    pipq() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | grep -v "^WARNING: Location" || true; }
    pipq --upgrade pip
    pipq -r requirements/runtime.txt -r requirements/test.txt
    pipq --no-deps -r requirements/nodeps.txt
    "$venv/bin/python" -c "import torch, dlsia.core.networks.tunet, qlty.qlty2D, pyFAI, tiled"
    touch "$venv/.complete"
else
    echo "setup: reusing $venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$root" 2>&1 | grep -vE "^WARNING: Location|BuildBackendWarning|^ *$|!!|\*\*\*|Please|By 20|See https|corresp|with strategy|name as your package" \
    || true
ln -sfn "$venv" "$root/.venv"
