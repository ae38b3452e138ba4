"""Specimen photos for the table and the detail view: loaded off the GUI thread, cached."""
from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPixmap

from bioscan_desktop import workers
from bioscan_desktop.jobs import load_specimen_photo


def pil_to_qimage(image) -> QImage:
    """A QImage copy of an 8-bit RGB PIL image (safe to build on any thread)."""
    data = image.tobytes()
    return QImage(data, image.width, image.height, 3 * image.width, QImage.Format.Format_RGB888).copy()


class ThumbnailCache(QObject):
    """get(id) returns a cached QPixmap, or None and starts loading it; ``ready(id)`` when loaded."""

    ready = Signal(int)

    def __init__(self, size: int = 48, capacity: int = 3000, parent=None):
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self._project_path = ""
        self._cache: OrderedDict[int, QPixmap | None] = OrderedDict()
        self._pending: set[int] = set()

    def set_project(self, project_path: str) -> None:
        self._project_path = str(project_path)
        self._cache.clear()
        self._pending.clear()

    def get(self, specimen_id: int) -> QPixmap | None:
        if specimen_id in self._cache:
            self._cache.move_to_end(specimen_id)
            return self._cache[specimen_id]
        if specimen_id not in self._pending and self._project_path:
            self._pending.add(specimen_id)
            task = workers.Task(load_specimen_photo, self._project_path, specimen_id, self.size,
                                with_progress=False)
            path = self._project_path
            task.signals.finished.connect(lambda result, path=path: self._loaded(path, result))
            task.signals.failed.connect(lambda _msg, sid=specimen_id, path=path: self._loaded(path, (sid, None)))
            workers.start(task, "light")
        return None

    def _loaded(self, path: str, result) -> None:
        specimen_id, image = result
        if path != self._project_path:
            return  # the user switched projects meanwhile
        self._pending.discard(specimen_id)
        self._cache[specimen_id] = None if image is None else QPixmap.fromImage(pil_to_qimage(image))
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.ready.emit(specimen_id)
