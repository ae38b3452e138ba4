"""Run engine calls off the GUI thread and turn their progress callbacks into Qt signals.

``Task(fn, *args, **kwargs)`` calls ``fn(*args, progress=callback, **kwargs)`` on a thread
pool. The callback emits ``progress(done, total, message)`` (throttled, so a fast batch
cannot flood the GUI's event queue) and raises engine.progress.Cancelled once ``cancel()``
was called, which is how every engine batch call is stopped cleanly.

The signals object is created on the GUI thread, so connected slots run there (queued).
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05


class TaskSignals(QObject):
    progress = Signal(int, int, str)
    finished = Signal(object)  # the function's return value
    failed = Signal(str)  # a one-line message for the user
    cancelled = Signal()


class Task(QRunnable):
    def __init__(self, fn: Callable[..., Any], *args: Any, with_progress: bool = True, **kwargs: Any):
        super().__init__()
        self.setAutoDelete(False)  # Python owns it (see _running)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.with_progress = with_progress
        self.signals = TaskSignals()
        self._cancel = threading.Event()
        self._last_emit = 0.0
        self.done = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _progress(self, done: int, total: int, message: str = "") -> None:
        from engine.progress import Cancelled

        if self._cancel.is_set():
            raise Cancelled()
        now = time.monotonic()
        if now - self._last_emit >= PROGRESS_INTERVAL_S or (total and done >= total):
            self._last_emit = now
            self.signals.progress.emit(int(done), int(total), str(message))

    def run(self) -> None:
        from engine.errors import BioscanError
        from engine.progress import Cancelled

        try:
            kwargs = dict(self.kwargs, progress=self._progress) if self.with_progress else self.kwargs
            result = self.fn(*self.args, **kwargs)
        except Cancelled:
            self.signals.cancelled.emit()
        except BioscanError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged with the traceback
            log.error("background task failed:\n%s", traceback.format_exc())
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.finished.emit(result)
        finally:
            self.done.set()
            _release(self)


_running: set[Task] = set()
_lock = threading.Lock()
_pools: dict[str, QThreadPool] = {}
# heavy: imports and clustering (one at a time on a 2-core machine); light: thumbnails, trees, exports;
# warmup: umap's first import (~15 s of numba compilation) must not hold up an import
POOL_SIZES = {"heavy": 1, "light": 2, "warmup": 1}


def _release(task: Task) -> None:
    with _lock:
        _running.discard(task)


def pool(name: str) -> QThreadPool:
    if name not in _pools:
        p = QThreadPool()
        p.setMaxThreadCount(POOL_SIZES[name])
        _pools[name] = p
    return _pools[name]


def start(task: Task, pool_name: str = "light") -> Task:
    """Run a task in the named pool; it is kept alive until it finishes."""
    with _lock:
        _running.add(task)
    pool(pool_name).start(task)
    return task


def running() -> list[Task]:
    with _lock:
        return list(_running)


def shutdown(timeout_ms: int = 5000) -> None:
    """Cancel every task and wait for the pools (on quit, and between tests)."""
    for task in running():
        task.cancel()
    for p in _pools.values():
        p.clear()  # tasks still queued never run: forget them too
        p.waitForDone(timeout_ms)
    with _lock:
        _running.clear()
