"""The import panel: progress with counts, rate and time left; cancel; resume an interrupted import."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from bioscan_desktop.progress_meter import ProgressMeter


class ImportPanel(QWidget):
    cancelRequested = Signal()
    resumeRequested = Signal()
    importRequested = Signal()  # "Import folder…"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.meter = ProgressMeter()
        self.title = QLabel("No import running.")
        self.title.setObjectName("importTitle")
        self.stage = QLabel("")
        self.stage.setStyleSheet("color: #555;")
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.setMinimumWidth(260)
        self.numbers = QLabel("")
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.setToolTip("Stops after the current batch; everything imported so far is kept "
                                      "and the import can be resumed.")
        self.resume_button = QPushButton("Resume import")
        self.import_button = QPushButton("Import folder…")
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.resume_button.clicked.connect(self.resumeRequested)
        self.import_button.clicked.connect(self.importRequested)

        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.resume_button)
        row.addWidget(self.import_button)
        row.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(self.numbers)
        layout.addWidget(self.stage)
        self.set_idle()

    @property
    def running(self) -> bool:
        return self.cancel_button.isVisible()

    def set_idle(self, message: str = "No import running.", resumable: str = "") -> None:
        self.title.setText(message)
        self.title.setToolTip(message)
        self.bar.hide()
        self.cancel_button.hide()
        self.cancel_button.setEnabled(True)
        self.resume_button.setVisible(bool(resumable))
        self.resume_button.setToolTip(resumable)
        self.import_button.show()
        self.numbers.setText("")
        self.stage.setText(resumable)

    def start(self, folders: list[str]) -> None:
        self.meter = ProgressMeter()
        names = ", ".join(f.rstrip("/").split("/")[-1] or f for f in folders)
        self.title.setText(f"Importing {names}")
        self.bar.setRange(0, 0)  # busy until the first count arrives
        self.bar.show()
        self.bar.setMinimumWidth(420)
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.resume_button.hide()
        self.import_button.hide()
        self.numbers.setText("scanning folders…")
        self.stage.setText("")

    def set_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.meter.update(done, total)
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
            self.numbers.setText(self.meter.text("records and photos"))
        self.stage.setText(message[:1].upper() + message[1:] if message else "")

    def cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.stage.setText("Cancelling after the current batch…")

    def sizeHint(self):
        hint = super().sizeHint()
        hint.setHeight(max(hint.height(), 96))
        return hint


class DropZone(QFrame):
    """The first thing a new user sees: what to do, in one sentence, and one button."""

    importRequested = Signal()
    openRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        title = QLabel("Drop a folder here to identify its specimens")
        title.setStyleSheet("font-size: 18pt; font-weight: 600;")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        body = QLabel("BIOSCAN Desktop reads DNA barcode files (FASTA, TSV/CSV tables) and specimen photos "
                      "in a folder and its subfolders, checks their quality, and names each specimen against "
                      "the reference library, marking the ones that look new.\nNothing leaves this computer.")
        body.setWordWrap(True)
        body.setAlignment(Qt.AlignmentFlag.AlignCenter)
        body.setMaximumWidth(620)
        choose = QPushButton("Choose a folder…")
        choose.setDefault(True)
        choose.setMinimumHeight(36)
        choose.clicked.connect(self.importRequested)
        open_button = QPushButton("Open a project…")
        open_button.clicked.connect(self.openRequested)
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(choose)
        buttons.addWidget(open_button)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.addStretch()
        layout.addWidget(title)
        layout.addSpacing(12)
        layout.addWidget(body, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addSpacing(16)
        layout.addLayout(buttons)
        layout.addStretch()
        self.setObjectName("dropZone")
        self.setStyleSheet("#dropZone { border: 2px dashed #9e9e9e; border-radius: 12px; margin: 24px; }")
