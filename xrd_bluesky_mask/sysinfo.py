"""What machine a benchmark ran on (printed beside every table)."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    """CPU model and cores; torch version, threads and GPU when torch is already imported."""
    import sys

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    torch = sys.modules.get("torch")
    if torch is not None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        text += f", torch {torch.__version__} ({torch.get_num_threads()} threads), GPU: {gpu}"
    from . import malloc

    if malloc._done is not None:
        text += f", glibc malloc {'tuned' if malloc._done else 'defaults'}"
    return text
