"""Tiled adapters for detector image files (fabio) and image series.

Empty for now: the adapters (single TIFF/EDF/CBF frames, numbered series as one N x H x W
stack, PONI beside them as metadata) are the next step of the layout in DESIGN.md.
"""
