"""GUI test fixtures: a real tiny model and library (tests/conftest.py), a folder of specimens, the window."""
from __future__ import annotations

import pytest

from tests.synthetic import write_tsv

BAD_SEQUENCE = "THIS IS NOT DNA"


@pytest.fixture
def gui_settings(tmp_path, monkeypatch, tiny_library, tiny_dna_pack):
    from bioscan_desktop.settings import Settings

    monkeypatch.setenv("BIOSCAN_DESKTOP_CONFIG", str(tmp_path / "config"))
    return Settings(user_name="tester", library_path=str(tiny_library), dna_model_path=str(tiny_dna_pack))


def _photo(path, color, size=(160, 120)) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).ellipse((30, 20, 130, 100), fill=(40, 30, 20))  # an "insect"
    img.save(path)


@pytest.fixture
def specimen_folder(tmp_path, synthetic_split):
    """Known and novel barcodes, a bad record, photos paired with two barcodes, a photo-only specimen,
    and a broken photo. Returns (folder, facts about what is in it)."""
    _, known, novel = synthetic_split
    folder = tmp_path / "batch-01"
    (folder / "photos").mkdir(parents=True)
    write_tsv(folder / "barcodes.tsv", known + novel)
    with open(folder / "barcodes.tsv", "a", encoding="utf-8") as fh:
        fh.write("\t".join(["BAD-1", "", "", "", "", "", BAD_SEQUENCE]) + "\n")
    for rec, color in zip(known[:2], [(200, 180, 90), (90, 160, 200)]):
        _photo(folder / "photos" / f"{rec.specimen_id}.jpg", color)
    _photo(folder / "photos" / "trap-photo-1.jpg", (120, 200, 120))
    (folder / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    facts = {
        "known": known, "novel": novel,
        "specimens": len(known) + len(novel) + 3,  # + BAD-1, trap-photo-1, broken
        "with_photo": [r.specimen_id for r in known[:2]],
    }
    return folder, facts


@pytest.fixture
def window(qtbot, gui_settings, tmp_path):
    from bioscan_desktop import workers
    from bioscan_desktop.main_window import MainWindow

    win = MainWindow(gui_settings)
    win.quiet_errors = True  # no modal boxes in tests; errors still reach the status bar
    qtbot.addWidget(win)
    win.show()
    activate(qtbot, win)
    assert win.open_project(tmp_path / "test.bioscan.db", create=True)
    yield win
    workers.shutdown()
    if win.project is not None:
        win.project.close()


@pytest.fixture
def imported(qtbot, window, specimen_folder):
    """The window after importing the specimen folder (waits for completion)."""
    folder, facts = specimen_folder
    with qtbot.waitSignal(window.importFinished, timeout=120_000) as blocker:
        assert window.start_import([str(folder)])
    assert blocker.args[0] is not None, window.import_panel.title.text()
    qtbot.waitUntil(lambda: window.tree_view.model.root.count == facts["specimens"], timeout=10_000)
    return window, facts


# ------------------------------------------------------------------------------ driving the window by keyboard
def activate(qtbot, widget) -> None:
    """Make a window the active one, so its shortcuts receive the keys (as a user's focused window does)."""
    from PySide6.QtWidgets import QApplication

    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget, timeout=5_000)


def press(qtbot, window, keys: str) -> None:
    """Type a shortcut ("Ctrl+Shift+E", "F5", "Home") into the focused widget of the active window."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QKeySequence
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    activate(qtbot, window)
    combo = QKeySequence(keys)[0]
    target = QApplication.focusWidget() or window
    QTest.keyClick(target, combo.key(), combo.keyboardModifiers())


class ModalDriver:
    """Runs a function on the next modal dialog to open, while the code under test waits in its exec().

    The function gets the dialog; it should end it (Enter, Esc). If it raises, or leaves the
    dialog open, the dialog is rejected so the test fails instead of hanging.
    """

    def __init__(self, qtbot):
        self.qtbot = qtbot
        self.seen: list = []  # every dialog handled (type name, title)
        self.errors: list[BaseException] = []

    def next(self, handle, timeout_ms: int = 15_000) -> None:
        import time

        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        deadline = time.monotonic() + timeout_ms / 1000
        shown: dict[int, float] = {}  # dialog -> when it was first seen not active
        timer = QTimer()
        timer.setInterval(20)

        def poll() -> None:
            dialog = QApplication.activeModalWidget()
            ready = dialog is not None and dialog.isVisible() and QApplication.activeWindow() is dialog
            if dialog is not None and dialog.isVisible() and not ready and time.monotonic() > shown.setdefault(
                    id(dialog), time.monotonic()) + 1.0:
                dialog.activateWindow()  # open a second, and still not the active window: make it so
            if not ready:  # not open yet, or not yet the window the keys go to
                if time.monotonic() > deadline:
                    timer.stop()
                    self.errors.append(TimeoutError("no dialog opened" if dialog is None else
                                                    f"{dialog.windowTitle()!r} opened but never became active"))
                    if dialog is not None:  # fail, not hang
                        dialog.reject()
                return
            timer.stop()
            self.seen.append((type(dialog).__name__, dialog.windowTitle()))
            try:
                handle(dialog)
            except BaseException as exc:  # noqa: BLE001 - re-raised by check()
                self.errors.append(exc)
            finally:
                from shiboken6 import isValid

                if isValid(dialog) and dialog.isVisible():  # static QFileDialogs delete themselves
                    dialog.reject()

        timer.timeout.connect(poll)
        timer.start()
        self._timer = timer  # keep it alive

    def check(self) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None and timer.isActive():
            timer.stop()
            self.errors.append(AssertionError("the expected dialog never opened"))
        if self.errors:
            first, self.errors = self.errors[0], []
            raise first


@pytest.fixture
def modal(qtbot):
    driver = ModalDriver(qtbot)
    yield driver
    driver.check()


def type_into(dialog, text: str, select_all: bool = True) -> None:
    """Type text into the dialog's focused field, as a user would (replacing what is selected)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    field = dialog.focusWidget()
    assert field is not None, f"nothing has the keyboard focus in {dialog.windowTitle()!r}"
    if select_all:
        QTest.keyClick(field, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(field, text)


def key(dialog, keys: str) -> None:
    """Press keys in the dialog's focused widget ("Return", "Escape", "Tab", "Space", "Shift+Return")."""
    from PySide6.QtGui import QKeySequence
    from PySide6.QtTest import QTest

    combo = QKeySequence(keys)[0]
    QTest.keyClick(dialog.focusWidget() or dialog, combo.key(), combo.keyboardModifiers())


def save_file_as(path):
    """A ModalDriver handler for a file dialog: type the path and press Enter."""
    def handle(dialog):
        type_into(dialog, str(path))
        key(dialog, "Return")
    return handle
