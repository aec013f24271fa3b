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
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r requirements/runtime.txt -r requirements/test.txt
    "$venv/bin/python" -m pip install -q --no-deps -r requirements/nodeps.txt
    touch "$venv/.complete"
else
    echo "setup: reusing $venv"
fi
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root"
ln -sfn "$venv" "$root/.venv"
