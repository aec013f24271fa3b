"""Per-stage time of masking + integrating full 2880x2880 frames: U-Net fast path, U-Net
reference path, classical filter and (``--paper``) the paper's qlty configuration, side by side.

A thin wrapper of ``xrd-mask bench`` (same options), kept so every benchmark lives here:

    .venv/bin/python benchmarks/bench_predict.py [--size 2880] [--frames 4] [--paper] [--json F]
"""

from __future__ import annotations

import sys

from xrd_bluesky_mask.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
