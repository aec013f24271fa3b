#!/usr/bin/env bash
# Build (or reuse) the project's virtual environment and install the package into it.
#
# The venv lives outside the checkout, named by a hash of requirements/*.txt, so a fresh
# clone with unchanged pins reuses it (no 5 GB re-download); changed pins build a new one.
# Override the location with XRD_MASK_VENV=/path. `.venv` in the checkout is a thin venv on top
# of it that holds this checkout's own code (editable).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || py=python3
pins=$(cat requirements/runtime.txt requirements/nodeps.txt requirements/test.txt requirements/extras.txt | sha256sum | cut -c1-12)
venv=${XRD_MASK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/xrd-bluesky-mask/venv-$pins}
if [ ! -f "$venv/.complete" ]; then
    echo "setup: building $venv (first run with these pins: about 3 minutes, 6 GB)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    pipq() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | grep -v "^WARNING: Location" || true; }
    pipq --upgrade pip
    pipq -r requirements/runtime.txt -r requirements/test.txt -r requirements/extras.txt
    pipq --no-deps -r requirements/nodeps.txt
    "$venv/bin/python" -c "import torch, dlsia.core.networks.tunet, qlty.qlty2D, pyFAI, tiled, prefect"
    touch "$venv/.complete"
else
    echo "setup: reusing $venv"
fi
# The shared venv holds the dependencies only; this checkout's own code goes into a thin venv
# in `.venv` that sees the shared packages through a .pth file, so that two clones with the
# same pins each run their own code.
if "$venv/bin/python" -m pip show -q xrd-bluesky-mask >/dev/null 2>&1; then
    "$venv/bin/python" -m pip uninstall -q -y xrd-bluesky-mask >/dev/null 2>&1
fi
local_venv="$root/.venv"
if [ "$(cat "$local_venv/.shared" 2>/dev/null)" != "$venv" ]; then
    [ -L "$local_venv" ] && rm "$local_venv"
    rm -rf "$local_venv"
    "$venv/bin/python" -m venv --without-pip "$local_venv"
    site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
    own=$("$local_venv/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
    # First line: the path (read by type checkers); second: also runs the shared .pth files.
    printf '%s\nimport site; site.addsitedir(%s)\n' "$site" "'$site'" > "$own/xrd_shared_env.pth"
    # The shared venv's commands (tiled, pytest, ruff, ...) run with this checkout's python.
    for f in "$venv"/bin/*; do
        [ -f "$f" ] || continue
        name=$(basename "$f")
        case "$name" in python*|pip*|activate*|Activate*|deactivate) continue ;; esac
        if head -c 2 "$f" | grep -q '#!' && head -n 1 "$f" | grep -q "$venv/bin/python"; then
            { echo "#!$local_venv/bin/python"; tail -n +2 "$f"; } > "$local_venv/bin/$name"
            chmod +x "$local_venv/bin/$name"
        else
            ln -s "$f" "$local_venv/bin/$name"
        fi
    done
    echo "$venv" > "$local_venv/.shared"
fi
"$local_venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$root" 2>&1 | grep -vE "^WARNING: Location|BuildBackendWarning|^ *$|!!|\*\*\*|Please|By 20|See https|corresp|with strategy|name as your package" \
    || true
