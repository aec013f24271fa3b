"""Files in a registered folder that fabio reads but no adapter serves, named in a warning.

Tiled skips a file whose type has no adapter with an INFO line only, so a folder of Princeton
``.spe`` or MarCCD ``.mccd`` frames registers as an empty container without a word.
`report_unserved` (called by the walker for every folder) warns once per folder, counting the
files of each such type, naming a few and saying what to do.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["Unserved", "fabio_format", "report_unserved", "unserved_files"]

log = logging.getLogger(__name__)

#: File names named in the warning for each type; the rest are counted.
EXAMPLES = 3


def fabio_format(path: Path) -> str | None:
    """The name of the fabio format that reads ``path`` as an image (e.g. ``"SpeImage"``), or
    None when fabio knows no format for its extension or cannot read a 2D image from it.

    Reads the whole file (fabio's header-only reader gives no shape for some formats), so the
    caller opens one file per extension.
    """
    import fabio
    from fabio.fabioformats import is_extension_supported

    ext = path.suffix.lower().lstrip(".")
    if not ext or not is_extension_supported(ext):
        return None
    try:
        image = fabio.open(str(path))
    except Exception:  # noqa: BLE001 (fabio raises anything from a file it cannot parse)
        return None
    data = getattr(image, "data", None)
    if data is None or getattr(data, "ndim", 0) < 2 or data.size == 0:
        return None
    return type(image).__name__


class Unserved(collections.UserDict[str, tuple[str, list[Path]]]):
    """Extension (``".spe"``) → (fabio format, the files of that extension), sorted by name."""

    @property
    def count(self) -> int:
        """How many files in all."""
        return sum(len(files) for _, files in self.values())


def unserved_files(files: Iterable[Path], served: Callable[[Path], bool]) -> Unserved:
    """The files that fabio reads but ``served`` says no adapter serves, by extension.

    One file of each extension is opened with fabio (`fabio_format`); if fabio cannot read
    it, the extension is taken for something else (a ``.xml`` that is not an XSD image).
    """
    from fabio.fabioformats import is_extension_supported

    by_ext: dict[str, list[Path]] = collections.defaultdict(list)
    for f in files:
        ext = f.suffix.lower()
        if ext and is_extension_supported(ext.lstrip(".")) and f.is_file() and not served(f):
            by_ext[ext].append(f)
    found = Unserved()
    for ext, members in sorted(by_ext.items()):
        members.sort()
        fmt = fabio_format(members[0])
        if fmt is not None:
            found[ext] = (fmt, members)
    return found


def _examples(files: Sequence[Path]) -> str:
    names = ", ".join(f.name for f in files[:EXAMPLES])
    return names + (f", ... ({len(files) - EXAMPLES} more)" if len(files) > EXAMPLES else "")


def report_unserved(folder: Path, found: Unserved) -> None:
    """Log one WARNING naming what `unserved_files` found in ``folder`` and what to do."""
    if not found:
        return
    kinds = "; ".join(f"{len(files)} {ext} ({fmt}: {_examples(files)})"
                      for ext, (fmt, files) in found.items())
    exts = " ".join(f"{folder}/*{ext}" for ext in found)
    log.warning(
        "NOT REGISTERED: %d file%s in %s %s of a type that fabio reads but no adapter serves: "
        "%s. To serve them, convert them to EDF (fabio-convert -F edfimage -o %s %s) and "
        "register the folder again; the adapters serve TIFF, EDF, CBF and GE frames "
        "(tiled_adapters.mimetypes).",
        found.count, "" if found.count == 1 else "s", folder,
        "is" if found.count == 1 else "are", kinds, folder, exts)
