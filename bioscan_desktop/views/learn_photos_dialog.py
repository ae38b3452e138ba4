"""Learn photos from barcoded specimens: the barcode confidence a photo is named at, and the user library."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout,
    QWidget,
)

from bioscan_desktop.views.dialog_buttons import save_cancel_buttons


class LearnPhotosDialog(QDialog):
    """Asks for the confidence and the library; ``choice()`` gives (library path, confidence)."""

    def __init__(self, library: str, base_name: str, min_confidence: float, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Learn photos from barcoded specimens")
        self.base_name = base_name
        self.min_confidence = QDoubleSpinBox()
        self.min_confidence.setRange(0.5, 0.99)  # below 0.5 a barcode call is more often wrong than right
        self.min_confidence.setSingleStep(0.05)
        self.min_confidence.setDecimals(2)
        self.min_confidence.setValue(min_confidence)
        self.min_confidence.setToolTip("A photo is named down to the finest rank its specimen's barcode call "
                                       "reaches this confidence at; specimens below it at order are left out")
        self.library = QLineEdit(library)
        self.library.setPlaceholderText("a library file (.db): an existing one, or a new one")
        self.library.textChanged.connect(self._explain)
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)  # Enter starts the job, it does not open a file chooser
        browse.clicked.connect(self._pick_library)
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(self.library, 1)
        row_layout.addWidget(browse)
        form = QFormLayout()
        form.addRow("Barcode call confidence", self.min_confidence)
        form.addRow("Add to library", row)
        intro = QLabel("The photos of specimens whose barcode was identified become photo references of your "
                       "library, named as the barcode called them, with the specimen and call they came from. "
                       "Photos of specimens whose barcode failed are then matched against them.")
        intro.setWordWrap(True)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        buttons, self.start_button = save_cancel_buttons(self, "Learn")
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self._explain()
        self.resize(560, self.sizeHint().height())
        self.library.setFocus()

    def _explain(self) -> None:
        text = self.library.text().strip()
        self.start_button.setEnabled(bool(text))
        if not text:
            self.note.setText("Choose a library file.")
        elif Path(text).is_file():
            self.note.setText("The photo references are added to this library.")
        else:
            self.note.setText(f"A new library, a copy of {self.base_name}, with the photo references added.")

    def _pick_library(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Library to add photo references to", self.library.text(),
                                              "Reference libraries (*.db);;All files (*)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.library.setText(path)

    def choice(self) -> tuple[str, float]:
        return self.library.text().strip(), round(self.min_confidence.value(), 4)
