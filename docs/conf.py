"""Sphinx configuration of the documentation site: the markdown pages of docs/ (myst-parser)
and the API reference from the docstrings (autodoc, numpy style through napoleon).

Build it as the test command does (warnings are errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs build/docs
"""

from __future__ import annotations

project = "xrd-bluesky-mask"
author = "xrd-bluesky-mask developers"
copyright = "xrd-bluesky-mask developers"  # noqa: A001 (the name Sphinx reads)
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# markdown: `#heading-anchor` links within and between pages resolve (down to ###)
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# docstrings: numpy style; `name` in a docstring links to the object where Sphinx knows it
napoleon_google_docstring = False
napoleon_numpy_docstring = True
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "alabaster"
html_title = "xrd-bluesky-mask"
