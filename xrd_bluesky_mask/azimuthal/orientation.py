"""How a frame is turned before its PONI applies: transposed, flipped up-down, flipped
left-right, or a combination.

A PONI made in another program may describe the detector image in another orientation than
the array a file reader returns (Dioptas' PONI files apply to the image flipped up-down).
`Orientation.apply` turns an input frame into the orientation the PONI applies to and
`Orientation.undo` turns results (masks, overlays) back, so outputs keep the input's
orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["AS_GIVEN", "Orientation", "candidate_orientations"]

_WORDS = {"transpose": "transposed", "flipud": "flipped up-down", "fliplr": "flipped left-right"}


@dataclass(frozen=True)
class Orientation:
    """Transpose, then flip up-down, then flip left-right (each optional).

    Each step is its own inverse, so `undo` runs them in reverse order.
    """

    transpose: bool = False
    flipud: bool = False
    fliplr: bool = False

    @classmethod
    def parse(cls, name: str | Orientation | None) -> Orientation:
        """``"as-given"``, ``"flipud"``, ``"fliplr"``, ``"transpose"``, ``"rot180"`` or steps
        joined by ``+`` (``"transpose+flipud"``); an `Orientation` is returned as it is."""
        if name is None:
            return AS_GIVEN
        if isinstance(name, Orientation):
            return name
        text = name.strip().lower().replace("_", "-")
        if text in ("", "as-given", "none", "identity"):
            return AS_GIVEN
        steps = set(text.replace("rot180", "flipud+fliplr").split("+"))
        unknown = steps - set(_WORDS)
        if unknown:
            raise ConfigError(
                f"unknown orientation {name!r}: use 'as-given', 'flipud', 'fliplr', "
                "'rot180', 'transpose' or steps joined by '+'"
            )
        return cls(**dict.fromkeys(steps, True))

    @property
    def name(self) -> str:
        """``"as-given"`` or the steps joined by ``+`` (``parse`` reads it back)."""
        steps = [s for s in ("transpose", "flipud", "fliplr") if getattr(self, s)]
        return "+".join(steps) or "as-given"

    @property
    def words(self) -> str:
        """``"as given"``, ``"flipped up-down"``, ``"transposed and flipped left-right"``."""
        steps = [_WORDS[s] for s in ("transpose", "flipud", "fliplr") if getattr(self, s)]
        return " and ".join(steps) or "as given"

    @property
    def flags(self) -> str:
        """The ``xrd-mask predict`` options that select this orientation (``""``: none)."""
        return " ".join(f"--{s}" for s in ("transpose", "flipud", "fliplr") if getattr(self, s))

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flipud or self.fliplr)

    def shape_of(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The ``(rows, cols)`` of a frame of ``shape`` once turned."""
        rows, cols = int(shape[-2]), int(shape[-1])
        return (cols, rows) if self.transpose else (rows, cols)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (last two axes: rows, cols) turned into the orientation the PONI applies
        to; a view, no copy."""
        a = np.asarray(image)
        if self.transpose:
            a = np.swapaxes(a, -2, -1)
        if self.flipud:
            a = a[..., ::-1, :]
        if self.fliplr:
            a = a[..., ::-1]
        return a

    def undo(self, image: np.ndarray) -> np.ndarray:
        """The inverse of `apply`: a result in the PONI's orientation back in the input's."""
        a = np.asarray(image)
        if self.fliplr:
            a = a[..., ::-1]
        if self.flipud:
            a = a[..., ::-1, :]
        if self.transpose:
            a = np.swapaxes(a, -2, -1)
        return a

    def map_indices(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Where input pixel positions (``rows``, ``cols``, pixel indices, may be fractional)
        land in the turned frame; ``shape`` is the input's ``(rows, cols)``."""
        r, c = (cols, rows) if self.transpose else (rows, cols)
        n_rows, n_cols = self.shape_of(shape)
        if self.flipud:
            r = (n_rows - 1) - r
        if self.fliplr:
            c = (n_cols - 1) - c
        return r, c

    def unmap_indices(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of `map_indices`: where positions in the turned frame (pixel indices,
        may be fractional) lie in the input; ``shape`` is the input's ``(rows, cols)``."""
        n_rows, n_cols = self.shape_of(shape)
        r, c = rows, cols
        if self.flipud:
            r = (n_rows - 1) - r
        if self.fliplr:
            c = (n_cols - 1) - c
        return (c, r) if self.transpose else (r, c)


#: The input frame as it is.
AS_GIVEN = Orientation()


def candidate_orientations(shape: tuple[int, ...]) -> list[Orientation]:
    """The orientations worth testing for a frame of ``shape``: as given, flipped up-down,
    left-right and both; transposed too when the frame is square (a transposed non-square
    frame no longer fits its detector's shape)."""
    found = [AS_GIVEN, Orientation(flipud=True), Orientation(fliplr=True),
             Orientation(flipud=True, fliplr=True)]
    if int(shape[-2]) == int(shape[-1]):
        found.append(Orientation(transpose=True))
    return found
