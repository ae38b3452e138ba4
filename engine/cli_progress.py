"""A terminal progress line on stderr: counts, rate and ETA."""
from __future__ import annotations

import re
import sys
import time

from engine.progress import format_duration


def phase(message: str) -> str:
    """The step a message names, without its numbers: "added 4096 references" and "added 8192
    references" are one step, whose rate is measured from its first line."""
    return re.sub(r"\d[\d,.]*", "#", message)


class ProgressPrinter:
    """A progress callback ``(done, total, message)`` printing at most every ``interval`` s: done of
    total (unknown when 0), the rate since the step's first line and, given a total, the time left."""

    def __init__(self, label: str = "", interval: float = 0.5, stream=None):
        self.label = label
        self.interval = interval
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last = 0.0
        self._start: dict[str, tuple[float, int]] = {}

    def line(self, done: int, total: int, message: str, now: float) -> str:
        t0, d0 = self._start.setdefault(phase(message), (now, done))
        elapsed = now - t0
        rate = (done - d0) / elapsed if elapsed > 0 else 0.0
        finished = total and done >= total
        count = f"{done:,}/{total:,} {100 * done / total:5.1f}%" if total else f"{done:,}"
        speed = f" {rate:,.0f}/s" if rate > 0 else ""
        eta = f" ETA {format_duration((total - done) / rate)}" if rate > 0 and total and not finished else ""
        return f"{self.label}{message}: {count}{speed}{eta}"

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        finished = total and done >= total
        if not finished and now - self._last < self.interval and phase(message) in self._start:
            return
        self._last = now
        line = self.line(done, total, message, now)
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
