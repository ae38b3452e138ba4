"""The buttons every dialog has: a default button (Enter) and Cancel (Esc), and Enter in a note field."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QPushButton

NEW_LINE_HINT = "Enter saves, Shift+Enter starts a new line"


def save_cancel_buttons(dialog: QDialog, save_text: str = "Save") -> tuple[QDialogButtonBox, QPushButton]:
    """Save (the default button: Enter) and Cancel (Esc) wired to the dialog."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
    save = buttons.button(QDialogButtonBox.StandardButton.Save)
    save.setText(save_text)
    save.setDefault(True)
    save.setAutoDefault(True)
    buttons.button(QDialogButtonBox.StandardButton.Cancel).setAutoDefault(False)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons, save


class EnterSaves(QObject):
    """In a multi-line note, Enter (or Ctrl+Enter) presses the dialog's default button; Shift+Enter is a new line."""

    def __init__(self, editor: QPlainTextEdit, save: QPushButton):
        super().__init__(editor)
        self.save = save
        editor.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                return False
            if self.save.isEnabled():
                self.save.click()
            return True
        return False
