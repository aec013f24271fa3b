"""Bluesky side: the live callback, its worker, and a simulated XRD detector.

Import from the submodules (`callback`, `worker`, `devices`); this package imports nothing heavy.
"""
