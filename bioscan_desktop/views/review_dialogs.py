"""Dialogs for a user's review of a call: override (names per rank + note) and a note alone.

Both save with Enter and cancel with Esc, also from the note field (Shift+Enter starts a new line there).
"""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QFormLayout, QLabel, QLineEdit, QPlainTextEdit, QVBoxLayout

from engine.project import CALL_RANKS

from bioscan_desktop.presenters import RANK_LABELS
from bioscan_desktop.views.dialog_buttons import NEW_LINE_HINT, EnterSaves, save_cancel_buttons

class OverrideDialog(QDialog):
    """Names per rank, prefilled with the current call. Finer ranks left empty stay uncalled."""

    def __init__(self, specimen_key: str, current: dict[str, str], user: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Override the call for {specimen_key}")
        self.fields: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for rank in CALL_RANKS:
            edit = QLineEdit(current.get(rank, ""))
            edit.setMinimumWidth(280)
            self.fields[rank] = edit
            form.addRow(RANK_LABELS[rank], edit)
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText(f"Why? (e.g. checked wing venation under the microscope). {NEW_LINE_HINT}")
        self.note.setFixedHeight(70)
        self.note.setTabChangesFocus(True)
        form.addRow("Note", self.note)
        info = QLabel(f"Saved as a review by <b>{user}</b>, with the date. The machine call is kept "
                      "and can always be seen in the history.")
        info.setWordWrap(True)
        buttons, self._ok = save_cancel_buttons(self, "Save override")
        EnterSaves(self.note, self._ok)
        for edit in self.fields.values():
            edit.textChanged.connect(self._validate)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(info)
        layout.addWidget(buttons)
        self._validate()
        finest = next((r for r in reversed(CALL_RANKS[:4]) if current.get(r)), CALL_RANKS[0])
        self.fields[finest].setFocus()  # the name most often corrected
        self.fields[finest].selectAll()

    def _validate(self) -> None:
        self._ok.setEnabled(any(self.taxonomy().values()))

    def taxonomy(self) -> dict[str, str]:
        return {rank: edit.text().strip() for rank, edit in self.fields.items()}

    def note_text(self) -> str:
        return self.note.toPlainText().strip()


class NoteDialog(QDialog):
    def __init__(self, specimen_key: str, user: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Add a note to {specimen_key}")
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText(f"e.g. leg missing; re-photograph. {NEW_LINE_HINT}")
        self.note.setTabChangesFocus(True)
        buttons, ok = save_cancel_buttons(self, "Save note")
        ok.setEnabled(False)
        self.note.textChanged.connect(lambda: ok.setEnabled(bool(self.note_text())))
        EnterSaves(self.note, ok)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Saved with your name (<b>{user}</b>) and the date; the call is not changed."))
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.resize(420, 220)
        self.note.setFocus()

    def note_text(self) -> str:
        return self.note.toPlainText().strip()
