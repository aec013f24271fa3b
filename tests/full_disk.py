"""A real full disk for a child process: a size-limited tmpfs mounted in a user and mount
namespace of its own (``unshare --user --map-root-user --mount``; no root needed where the
kernel lets users make namespaces). Writes there fail as on any full disk, with ENOSPC from
the kernel; the rest of the machine, the network (a Tiled server) included, is as usual.
Tests that need it are skipped where such namespaces are not allowed."""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest


@functools.cache
def _namespaces_allowed() -> str:
    """"" if a tmpfs can be mounted in a user namespace here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, text=True, timeout=30)
    return "" if probe.returncode == 0 else f"unshare refused: {probe.stderr.strip()[:200]}"


def run_on_small_disk(mountpoint: Path, size: str, argv: Sequence[str], *, timeout: float,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (a Python script's arguments: ``sys.executable`` is added) with a
    ``size`` tmpfs (e.g. ``"256k"``) mounted on the existing folder ``mountpoint``; skips the
    test where user namespaces are not allowed."""
    why = _namespaces_allowed()
    if why:
        pytest.skip(f"a small real disk needs user namespaces: {why}")
    command = (f"mount -t tmpfs -o size={size},mode=0700 tmpfs {shlex.quote(str(mountpoint))}"
               f" && exec {shlex.join([sys.executable, *argv])}")
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           command], capture_output=True, text=True, timeout=timeout, env=env)
