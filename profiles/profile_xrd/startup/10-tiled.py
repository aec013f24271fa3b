"""Tiled: the server of [tiled] uri (key: api_key or $TILED_API_KEY), else the embedded one.

This opens `xrd.session` (xrd_bluesky_mask.bluesky.session.Session): the Tiled client and the
RunEngine writing to it, which the next files take from it.
"""

tiled_client = xrd.connect_tiled()  # noqa: F821 (xrd: 00-settings.py)
