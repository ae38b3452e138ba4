"""A terminal progress line on stderr: counts, rate and ETA."""
from __future__ import annotations

import sys
import time


class ProgressPrinter:
    """A progress callback ``(done, total, message)`` printing at most every ``interval`` s."""

    def __init__(self, label: str = "", interval: float = 0.5, stream=None):
        self.label = label
        self.interval = interval
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last = 0.0
        self._start: dict[str, tuple[float, int]] = {}

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        t0, d0 = self._start.setdefault(message, (now, done))
        finished = total and done >= total
        if not finished and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - t0
        rate = (done - d0) / elapsed if elapsed > 0 else 0.0
        pct = f"{100 * done / total:5.1f}%" if total else ""
        eta = f" ETA {(total - done) / rate:.0f}s" if rate > 0 and total and not finished else ""
        line = f"{self.label}{message}: {done}/{total} {pct} {rate:.0f}/s{eta}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
