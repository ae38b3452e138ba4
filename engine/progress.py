"""The progress callback convention shared by every batch call.

A callback takes ``(done, total, message)`` and returns nothing; raising ``Cancelled``
(or any exception) from it stops the batch between two steps.
"""
from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Optional[Callable[[int, int, str], None]]


class Cancelled(Exception):
    """Raised by a progress callback to stop a batch cleanly."""


def report(progress: ProgressCallback, done: int, total: int, message: str = "") -> None:
    if progress is not None:
        progress(done, total, message)


def format_duration(seconds: float) -> str:
    """A time left or taken, as a progress line says it: "45 s", "12 min 05 s", "3 h 07 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
