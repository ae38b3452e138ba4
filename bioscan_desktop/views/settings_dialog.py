"""Settings: your name for reviews, device, reference library, model packs, confidence threshold."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QComboBox, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QVBoxLayout, QWidget,
)

from bioscan_desktop.settings import Settings
from bioscan_desktop.views.dialog_buttons import save_cancel_buttons

DEVICES = (("Automatic (GPU if available)", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda"))


def _path_row(edit: QLineEdit, pick) -> QWidget:
    w = QWidget()
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    browse = QPushButton("Browse…")
    browse.setAutoDefault(False)  # Enter saves the dialog, it does not open a file chooser
    browse.clicked.connect(pick)
    row.addWidget(browse)
    return w


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._settings = settings
        self.user = QLineEdit(settings.user_name)
        self.user.setPlaceholderText("recorded with every review")
        self.device = QComboBox()
        for label, key in DEVICES:
            self.device.addItem(label, key)
        self.device.setCurrentIndex(max(0, [k for _, k in DEVICES].index(settings.device)
                                        if settings.device in [k for _, k in DEVICES] else 0))
        self.library = QLineEdit(settings.library_path)
        self.library.setPlaceholderText("bundled default library")
        self.dna_model = QLineEdit(settings.dna_model_path)
        self.dna_model.setPlaceholderText("bundled DNA model pack")
        self.image_model = QLineEdit(settings.image_model_path)
        self.image_model.setPlaceholderText("none yet: photos are stored, not identified")
        self.min_confidence = QDoubleSpinBox()
        self.min_confidence.setRange(0.0, 0.99)
        self.min_confidence.setSingleStep(0.05)
        self.min_confidence.setValue(settings.min_confidence)
        self.min_confidence.setToolTip("A rank is left uncalled when its confidence is below this (used by new imports)")
        form = QFormLayout()
        form.addRow("Your name", self.user)
        form.addRow("Compute on", self.device)
        form.addRow("Reference library", _path_row(self.library, self._pick_library))
        form.addRow("DNA model pack", _path_row(self.dna_model, lambda: self._pick_folder(self.dna_model)))
        form.addRow("Image model pack", _path_row(self.image_model, lambda: self._pick_folder(self.image_model)))
        form.addRow("Minimum confidence", self.min_confidence)
        note = QLabel("Changes apply to the next import. Leave a path empty to use the bundled one.")
        note.setStyleSheet("color: #555;")
        buttons, _ = save_cancel_buttons(self)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())
        self.user.setFocus()

    def _pick_library(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Reference library", self.library.text(),
                                              "Reference libraries (*.db);;All files (*)")
        if path:
            self.library.setText(path)

    def _pick_folder(self, edit: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model pack folder", edit.text())
        if path:
            edit.setText(path)

    def result_settings(self) -> Settings:
        return replace(self._settings, user_name=self.user.text().strip(), device=self.device.currentData(),
                       library_path=self.library.text().strip(), dna_model_path=self.dna_model.text().strip(),
                       image_model_path=self.image_model.text().strip(),
                       min_confidence=round(self.min_confidence.value(), 4))
