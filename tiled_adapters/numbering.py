"""Which number in detector file names counts the frames, and the series it makes.

``scan_0001.tif``, ``scan_0002.tif``: the counter is the last number. Dioptas and many
beamlines put it elsewhere: in ``Fe3O4C_M1_map_1_P1_E1_001.tif``,
``Fe3O4C_M1_map_2_P1_E1_001.tif``, ... it is the fourth number of seven (``Fe3O4C_M1`` holds
three). Files whose names are equal
but for their numbers form a group; within it the counter is the one number that varies while
the rest of the name stays the same (when several vary, the last of them, and the files are
split into one series per value of the others). ``counter=k`` says which number it is instead:
1 the first number of the name, -1 the last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NumberedSeries", "group_numbered", "series_of"]

_DIGITS = re.compile(r"(\d+)")
_SEPARATORS = "_-. "


@dataclass(frozen=True)
class NumberedSeries:
    """Files that differ only by their frame counter.

    Attributes
    ----------
    name
        The file name without its counter and extension (``Fe3O4C_M1_map_P1_E1_001``).
    files
        The files, by counter (numerically: ``img_9`` before ``img_10``).
    numbers
        Each file's counter.
    counter
        Which number of the name it is, 0 = the first.
    """

    name: str
    files: tuple[Path, ...]
    numbers: tuple[int, ...]
    counter: int


def _split(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The text parts and the digit runs of a file's stem."""
    tokens = _DIGITS.split(path.stem)
    return tuple(tokens[0::2]), tuple(tokens[1::2])


def _name(texts: Sequence[str], numbers: Sequence[str], counter: int) -> str:
    parts = [texts[0]]
    for k, (number, text) in enumerate(zip(numbers, texts[1:], strict=True)):
        parts.append("\0" if k == counter else number)
        parts.append(text)
    before, _, after = "".join(parts).partition("\0")
    before = before.rstrip(_SEPARATORS)
    return before + after if before else after.lstrip(_SEPARATORS)


def _slot(counter: int | None, n: int, varying: list[int]) -> int | None:
    if counter is not None:
        k = counter - 1 if counter > 0 else n + counter
        return k if 0 <= k < n else None
    return varying[-1] if varying else None


def group_numbered(files: Iterable[Path], counter: int | None = None
                   ) -> tuple[list[NumberedSeries], list[Path]]:
    """Split files into numbered series (two or more files each) and the rest.

    Parameters
    ----------
    files
        File paths (any folder; files of different extensions never share a series).
    counter
        Which number of the name counts frames: 1 = the first, -1 = the last; None: the one
        that varies (see the module docstring). Names with fewer numbers are left alone.

    Returns
    -------
    series, singles
        The series in name order; the files in none of them (unnumbered names, and numbered
        ones alone in their group).
    """
    if counter == 0:
        raise ValueError("counter numbers the numbers of a name from 1 (or from -1 at the end)")
    templates: dict[tuple[str, tuple[str, ...]], list[tuple[Path, tuple[str, ...]]]] = {}
    singles: list[Path] = []
    for f in files:
        texts, numbers = _split(Path(f))
        if not numbers:
            singles.append(Path(f))
            continue
        templates.setdefault((Path(f).suffix.lower(), texts), []).append((Path(f), numbers))
    found: list[NumberedSeries] = []
    for (_, texts), members in templates.items():
        n = len(members[0][1])
        varying = [k for k in range(n) if len({int(nums[k]) for _, nums in members}) > 1]
        found_slot = _slot(counter, n, varying)
        if found_slot is None:
            singles.extend(p for p, _ in members)
            continue
        slot: int = found_slot
        groups: dict[tuple[int, ...], list[tuple[Path, tuple[str, ...]]]] = {}
        for p, nums in members:
            rest = tuple(int(v) for k, v in enumerate(nums) if k != slot)
            groups.setdefault(rest, []).append((p, nums))
        for group in groups.values():
            if len(group) < 2:
                singles.extend(p for p, _ in group)
                continue
            group.sort(key=lambda item: (int(item[1][slot]), item[0].name))
            found.append(NumberedSeries(
                _name(texts, group[0][1], slot), tuple(p for p, _ in group),
                tuple(int(nums[slot]) for _, nums in group), slot))
    found.sort(key=lambda s: (s.name, s.files[0].suffix.lower()))
    return found, sorted(singles)


def series_of(files: Sequence[Path]) -> NumberedSeries | None:
    """The files as one series in their given order (the counter detected from them), or None
    when they do not form exactly one."""
    found, singles = group_numbered(files)
    if len(found) != 1 or singles:
        return None
    return found[0]
