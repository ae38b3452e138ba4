"""Counts, rate and time left for a progress bar, from (done, total) samples. Qt-free."""
from __future__ import annotations

import time


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressMeter:
    """Rate over a sliding window (so a slow start-up, e.g. loading a model, does not skew the ETA)."""

    WINDOW_S = 10.0

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.started = clock()
        self._samples: list[tuple[float, int]] = []
        self.done = 0
        self.total = 0

    def update(self, done: int, total: int) -> None:
        now = self._clock()
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # a new stage counting from zero
        self.done, self.total = done, total
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.WINDOW_S:
            self._samples.pop(0)

    @property
    def rate(self) -> float | None:
        """Items per second, or None before there are two samples."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 and d1 > d0 else None

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if not rate or self.total <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def text(self, unit: str = "items") -> str:
        parts = [f"{self.done:,} of {self.total:,} {unit}" if self.total else f"{self.done:,} {unit}"]
        if self.rate:
            parts.append(f"{self.rate:,.0f}/s" if self.rate >= 10 else f"{self.rate:,.1f}/s")
        if self.eta is not None and self.done < self.total:
            parts.append(f"about {format_duration(self.eta)} left")
        parts.append(f"{format_duration(self._clock() - self.started)} elapsed")
        return " · ".join(parts)
