"""Which columns the specimens table shows (also in the header's right-click menu)."""
from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QDialog, QLabel, QVBoxLayout

from bioscan_desktop.views.dialog_buttons import save_cancel_buttons


class ColumnChooser(QDialog):
    def __init__(self, visibility: dict[str, bool], always_shown: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Columns")
        self.boxes: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Show these columns (drag a header to reorder; the layout is remembered):"))
        for header, visible in visibility.items():
            box = QCheckBox(header)
            box.setChecked(visible or header == always_shown)
            box.setEnabled(header != always_shown)
            self.boxes[header] = box
            layout.addWidget(box)
        buttons, _ = save_cancel_buttons(self, "Apply")
        layout.addWidget(buttons)
        next(b for b in self.boxes.values() if b.isEnabled()).setFocus()

    def visibility(self) -> dict[str, bool]:
        return {h: b.isChecked() for h, b in self.boxes.items()}
