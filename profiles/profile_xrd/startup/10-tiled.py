"""Tiled: the server of [tiled] uri (key: api_key or $TILED_API_KEY), else the embedded one."""

tiled_client = xrd.connect_tiled()  # noqa: F821 (xrd: 00-settings.py)
