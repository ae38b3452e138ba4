"""A zoomable photo: wheel or +/- to zoom, drag to pan, double-click or 0 to fit."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView


class PhotoView(QGraphicsView):
    ZOOM_STEP = 1.25

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._item)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumHeight(160)
        self._fitted = True
        self.placeholder("")

    def placeholder(self, text: str) -> None:
        self._item.setPixmap(QPixmap())
        self.scene().setSceneRect(0, 0, 1, 1)
        self.setToolTip(text)
        self._message = text
        self.viewport().update()

    def set_pixmap(self, pixmap: QPixmap) -> None:
        self._message = ""
        self._item.setPixmap(pixmap)
        self.scene().setSceneRect(self._item.boundingRect())
        self.setToolTip("Wheel or +/- to zoom, drag to pan, double-click to fit")
        self.fit()

    @property
    def has_photo(self) -> bool:
        return not self._item.pixmap().isNull()

    def fit(self) -> None:
        self._fitted = True
        if self.has_photo:
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom(self, factor: float) -> None:
        if self.has_photo:
            self._fitted = False
            self.scale(factor, factor)

    def wheelEvent(self, event) -> None:
        self.zoom(self.ZOOM_STEP if event.angleDelta().y() > 0 else 1 / self.ZOOM_STEP)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(self.ZOOM_STEP)
        elif key == Qt.Key.Key_Minus:
            self.zoom(1 / self.ZOOM_STEP)
        elif key == Qt.Key.Key_0:
            self.fit()
        else:
            super().keyPressEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def drawForeground(self, painter: QPainter, rect) -> None:
        if self._message and not self.has_photo:
            painter.save()
            painter.resetTransform()
            painter.setPen(Qt.GlobalColor.gray)
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self._message)
            painter.restore()
