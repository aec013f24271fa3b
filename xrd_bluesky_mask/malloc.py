"""glibc allocator settings for CPU inference on large frames.

By default glibc serves every allocation above a few MiB with a fresh ``mmap`` and returns it
on free, so each intermediate feature map of a 2880x2880 frame (tens of MB, dozens per frame)
is page-faulted in anew: on 2 cores about a third of the network's time went to the kernel.
`retain_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB) and stops the heap
from being trimmed, so freed maps are reused. The process keeps that memory until it exits
(its peak RSS is unchanged). PyTorch's CPU performance guide gives the same advice (or
jemalloc/tcmalloc). Set ``XRD_MASK_MALLOC_DEFAULTS=1`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 2**20  #: glibc's largest allowed mmap threshold on 64-bit (bytes)
TRIM_THRESHOLD = 2**31 - 1  #: bytes of free heap top kept before trimming (about 2 GiB)
TOP_PAD = 64 * 2**20  #: extra bytes asked of the kernel per heap growth

_done: bool | None = None


def retain_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them (once per process).

    Returns True when the settings took effect, False where they do not apply (not Linux,
    not glibc, ``mallopt`` refused them, or ``XRD_MASK_MALLOC_DEFAULTS=1``). Safe to call
    many times.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("XRD_MASK_MALLOC_DEFAULTS", "") not in ("", "0") or \
            not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD)))
    log.debug("glibc mallopt for large tensors: %s", "set" if ok else "refused")
    _done = ok
    return ok
