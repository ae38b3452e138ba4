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


# ------------------------------------------------------------------------------ process isolation
def _child_main(conn, fn: Callable[..., Any], args: tuple) -> None:
    last = [0.0]

    def progress(done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = now
            conn.send(("progress", done, total, message))

    try:
        conn.send(("result", fn(*args, progress=progress)))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def in_subprocess(fn: Callable[..., Any], *args: Any, progress=None) -> Any:
    """Run ``fn(*args, progress=...)`` in a fresh Python process and return its result.

    For CPU-heavy work (UMAP, clustering) whose imports and library calls hold the GIL for
    long stretches: in a thread they would freeze the GUI for up to a second.
    The child's progress is relayed to ``progress``; Cancelled from it terminates the child.
    ``fn`` must be importable (a module-level function) and its arguments and result picklable.
    """
    import multiprocessing

    from engine.errors import BioscanError
    from engine.progress import report

    ctx = multiprocessing.get_context("spawn")  # no fork of a process running Qt threads
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    state = (0, 0, "starting")
    try:
        while True:
            if parent.poll(0.1):
                try:
                    kind, *payload = parent.recv()
                except EOFError:
                    raise BioscanError("the background process stopped without a result "
                                       f"(exit code {proc.exitcode})") from None
                if kind == "result":
                    return payload[0]
                if kind == "error":
                    raise payload[0]
                state = tuple(payload)
            elif not proc.is_alive() and not parent.poll():
                raise BioscanError(f"the background process stopped unexpectedly (exit code {proc.exitcode})")
            report(progress, *state)  # also where a cancel request is raised
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        parent.close()


_running: set[Task] = set()
_lock = threading.Lock()
_pools: dict[str, QThreadPool] = {}
# heavy: imports and clustering (one at a time on a 2-core machine); light: thumbnails, trees, exports
POOL_SIZES = {"heavy": 1, "light": 2}


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
