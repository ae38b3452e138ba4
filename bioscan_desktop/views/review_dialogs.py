"""Dialogs for a user's review of a call: override (names per rank + note) and a note alone.

Both save with Enter and cancel with Esc, also from the note field (Shift+Enter starts a new line there).
An override's names are checked against the reference library as they are typed (``check``, e.g.
engine.LibraryTaxonomy.unknown): a name the library does not know at its rank is shown with the close
names it does know, and saving it asks for an explicit "Use the unknown name" (Esc goes back to the
names); the names confirmed so are stored as unverified (``unverified_names``) and marked in exports.
"""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtWidgets import QDialog, QFormLayout, QLabel, QLineEdit, QMessageBox, QPlainTextEdit, QVBoxLayout

from engine.project import CALL_RANKS

from bioscan_desktop.presenters import RANK_LABELS
from bioscan_desktop.views.dialog_buttons import NEW_LINE_HINT, EnterSaves, save_cancel_buttons

class OverrideDialog(QDialog):
    """Names per rank, prefilled with the current call. Finer ranks left empty stay uncalled."""

    def __init__(self, specimen_key: str, current: dict[str, str], user: str, parent=None,
                 check: Callable[[dict[str, str]], list[Any]] | None = None, check_problem: str = ""):
        super().__init__(parent)
        self.check = check  # taxonomy -> unknown names (objects with rank, name, suggestions, message())
        self._confirmed: dict[str, str] = {}
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
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #a04000")
        self.warning.setText(f"Names cannot be checked: {check_problem}" if check is None and check_problem else "")
        self.warning.setVisible(bool(self.warning.text()))
        buttons, self._ok = save_cancel_buttons(self, "Save override")
        buttons.accepted.disconnect()
        buttons.accepted.connect(self.save)
        EnterSaves(self.note, self._ok)
        for edit in self.fields.values():
            edit.textChanged.connect(self._validate)
            EnterSaves(edit, self._ok)  # Enter saves from any name, also after Tab passed the buttons
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.warning)
        layout.addWidget(info)
        layout.addWidget(buttons)
        self._validate()
        finest = next((r for r in reversed(CALL_RANKS[:4]) if current.get(r)), CALL_RANKS[0])
        self.fields[finest].setFocus()  # the name most often corrected
        self.fields[finest].selectAll()

    def _validate(self) -> None:
        self._ok.setEnabled(any(self.taxonomy().values()))
        if self.check is not None:
            unknown = self.unknown()
            self.warning.setText("\n".join(u.message() for u in unknown))
            self.warning.setVisible(bool(unknown))

    def unknown(self) -> list[Any]:
        """The names as typed now that the library does not know (none without a check)."""
        return [] if self.check is None else self.check(self.taxonomy())

    def save(self) -> None:
        """Accept, after an explicit confirmation of any name the library does not know."""
        unknown = self.unknown()
        if unknown and not self.confirm_unknown(unknown):
            self.fields[unknown[0].rank].setFocus()
            self.fields[unknown[0].rank].selectAll()
            return
        self._confirmed = {u.rank: u.name for u in self.unknown()}  # a close name may have been taken instead
        self.accept()

    def confirm_unknown(self, unknown: list[Any]) -> bool:
        """Ask whether to keep names the library does not know; a single close name can be taken instead."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Name not in the reference library",
                          "\n".join(u.message() for u in unknown), parent=self)
        box.setInformativeText("An unknown name is saved marked as unverified, and exports say so.")
        use = box.addButton("Use the unknown name" + ("s" if len(unknown) > 1 else ""),
                            QMessageBox.ButtonRole.AcceptRole)
        fixes = {}
        for u in unknown:
            if len(u.suggestions) == 1:
                fixes[box.addButton(f"Use {u.suggestions[0]}", QMessageBox.ButtonRole.ActionRole)] = u
        back = box.addButton("Go back", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(back)  # Enter does not take an unknown name by accident
        box.setEscapeButton(back)
        box.exec()
        chosen = box.clickedButton()
        if chosen in fixes:
            u = fixes[chosen]
            self.fields[u.rank].setText(u.suggestions[0])
            return not self.unknown()
        return chosen is use

    def unverified_names(self) -> dict[str, str]:
        """rank -> name of the saved names the library does not know (the user confirmed them)."""
        return dict(self._confirmed)

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
