"""Read a large library's memory-mapped files ahead, in the background.

A search touches memory-mapped pages in random order: with a cold page cache (after a reboot,
or once the system has reclaimed them) each one is a separate disk read, and the first queries
against a million references wait on thousands of them. Reading the files once from start to
end, on a thread, fills the cache in large sequential reads instead, while opening returns at
once (docs/benchmarks.md, library at scale: cold and warm runs).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable

CHUNK = 16 * 2**20  # bytes read at a time, into one reused buffer


def _read_ahead(paths: list[Path]) -> None:
    # read through, not posix_fadvise(WILLNEED): Linux caches only part of a large file on that advice
    buf = bytearray(CHUNK)
    for path in paths:
        try:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        except OSError:
            pass  # gone or unreadable: the search that needs it says so; a failure here costs only speed


def read_ahead(paths: Iterable[Path]) -> threading.Thread:
    """Start reading ``paths`` into the page cache on a daemon thread; returns the thread."""
    thread = threading.Thread(target=_read_ahead, args=([Path(p) for p in paths],), name="bioscan-readahead",
                              daemon=True)
    thread.start()
    return thread
