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
