"""progress: tqdm in a terminal, whole lines in a log file."""

import io

from xrd_bluesky_mask.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_whole_lines_and_the_last_one_once():
    log = io.StringIO()
    with progress(total=40, desc="reprocess", unit="frame", file=log,
                  log_interval_s=0.0) as bar:
        for _ in range(40):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n") and "\n\n" not in text
    lines = text.splitlines()
    assert lines[0].startswith("reprocess:   0%") and "40/40" in lines[-1]
    assert sum("40/40" in line for line in lines) == 1
    assert all(line.startswith("reprocess:") for line in lines)


def test_log_lines_are_spaced_in_time():
    log = io.StringIO()
    for _ in progress(range(1000), desc="masking", file=log, log_interval_s=3600):
        pass
    assert len(log.getvalue().splitlines()) == 2  # the start and the end, nothing between


def test_a_terminal_gets_tqdms_rewritten_bar():
    term = _Terminal()
    for _ in progress(range(5), desc="masking", file=term, mininterval=0):
        pass
    assert "\r" in term.getvalue()
