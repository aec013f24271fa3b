"""A masker that fails its first calls, for the retries of the Prefect flow (named by import path,
as a flow parameter is)."""

from __future__ import annotations

from typing import Any, ClassVar

from xrd_bluesky_mask.masking.classical import RingOutlierMasker


class FlakyMasker:
    """The classical masker, except that the first ``failures_left`` calls (over all instances,
    as each retry builds a new one) raise ``RuntimeError("flaky")``."""

    name = "flaky"
    failures_left: ClassVar[int] = 0
    calls: ClassVar[int] = 0

    def __init__(self) -> None:
        self._inner = RingOutlierMasker()

    def predict(self, frame: Any, geometry: Any, **kwargs: Any) -> Any:
        """Fail while failures are left, else mask as the classical masker does."""
        type(self).calls += 1
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            raise RuntimeError("flaky")
        return self._inner.predict(frame, geometry, **kwargs)

    def settings(self) -> dict[str, Any]:
        """Equal for every instance: a retry continues the same result version."""
        return {**self._inner.settings(), "masker": self.name}
