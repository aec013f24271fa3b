"""Live masking: XRDMaskCallback subscribed after TiledWriter; results in derived/xrd_mask/<uid>;
a live view of spot count, masked share and texture index against frame (``xrd_view``).

If the masker cannot be built (e.g. no model), masking is off and the banner says why.
"""

from xrd_bluesky_mask.tiled.results import find_results, load_masks, load_patterns  # noqa: F401

xrd_callback = xrd.start_masking()  # noqa: F821
xrd_view = xrd.live_view()  # noqa: F821  # spot count, masked share, texture index vs frame
