"""Progress bars that read well both in a terminal and in a log file.

In a terminal this is `tqdm` as usual. Where stderr is not a terminal (a log file, a pipe,
a batch job), tqdm would rewrite its bar with carriage returns dozens of times into one
unreadable line; `progress` instead writes a whole line at most every ``log_interval_s``
seconds (30 s by default) and once at the end, each line ending in a newline.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress", "LOG_INTERVAL_S"]

#: Seconds between two progress lines in a log file.
LOG_INTERVAL_S = 30.0


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class progress(tqdm):  # noqa: N801 (used like tqdm)
    """`tqdm`, writing whole lines instead of a rewritten bar when its stream is no terminal.

    Takes every tqdm argument; ``log_interval_s`` sets the seconds between two lines in a log
    file (default `LOG_INTERVAL_S`).
    """

    def __init__(self, *args: Any, log_interval_s: float = LOG_INTERVAL_S, **kwargs: Any) -> None:
        stream = kwargs.get("file") or sys.stderr
        self._as_lines = not _is_terminal(stream)
        if self._as_lines:
            kwargs["mininterval"] = max(kwargs.get("mininterval", 0.0), log_interval_s)
            kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0.0), log_interval_s)
            kwargs.setdefault("ncols", 100)
            kwargs["dynamic_ncols"] = False
        self._shown: int | None = None
        super().__init__(*args, **kwargs)

    # tqdm's stubs say display returns None; tqdm returns True, or False for a hidden bar
    def display(  # pyright: ignore[reportIncompatibleMethodOverride]
            self, msg: str | None = None, pos: int | None = None) -> bool | None:
        """One whole line in a log file; tqdm's own bar in a terminal."""
        if not self._as_lines:
            return super().display(msg, pos)
        if self.fp is None:
            return None
        line = (msg if msg is not None else self.__str__()).strip("\r\n ")
        if not line or self.n == self._shown:
            return None
        self._shown = self.n
        self.fp.write(line + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        """In a log file: the last line once (unless it was just written), no blank line."""
        if self._as_lines and not self.disable:
            if self.leave is not False:
                self.display()
            self.leave = False
        super().close()
