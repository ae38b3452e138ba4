"""Tools > Re-match photos against the library, and the offer after Learn photos: the real actions,
their boxes driven from the keyboard, the background job, and what the table then shows.

The project and the learned library are made as in tests/engine/test_rematch.py: barcoded specimens
with photos of two families, photo-only specimens (trap-N) and one whose barcode failed (FAIL-1),
an image pack without a domain so that every photo is called from the references it is matched against.
"""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from tests.engine.test_image import photo_folder, trained_pack  # noqa: F401 - fixtures of the tiny image pack
from tests.engine.test_rematch import PHOTO_ONLY, _import_and_learn, libraries, pack, sample  # noqa: F401
from tests.gui.conftest import activate, key, type_into
from tests.gui.test_actions import covers

BARCODED_WITH_PHOTO = 8  # tests/engine/test_rematch.py's sample


@pytest.fixture
def learned_window(qtbot, tmp_path, monkeypatch, sample, libraries, pack):
    """(window on the imported project, using the learned library in Settings, the barcoded specimens)."""
    from bioscan_desktop import workers
    from bioscan_desktop.main_window import MainWindow
    from bioscan_desktop.settings import Settings

    folder, barcoded = sample
    project, library, _ = _import_and_learn(tmp_path, folder, libraries, pack)
    monkeypatch.setenv("BIOSCAN_DESKTOP_CONFIG", str(tmp_path / "config"))
    win = MainWindow(Settings(user_name="tester", library_path=str(library), dna_model_path=str(libraries[1]),
                              image_model_path=str(pack), device="cpu"))
    win.quiet_errors = True
    qtbot.addWidget(win)
    win.show()
    activate(qtbot, win)
    assert win.open_project(project)
    yield win, barcoded
    workers.shutdown()
    if win.project is not None:
        win.project.close()


def _shown(window) -> dict[str, dict]:
    """specimen key -> the table's row as the user sees it (column header -> text)."""
    from bioscan_desktop.models.results_table import COLUMNS

    model = window.results_model
    out = {}
    for row in range(model.rowCount()):
        texts = {c.header: model.data(model.index(row, i)) for i, c in enumerate(COLUMNS)}
        out[texts["Specimen"]] = texts
    return out


def _answer(expected_photo_only: int, expected_all: int, all_photos: bool):
    def handle(box):
        assert box.windowTitle() == "Re-match photos against the library"
        assert "against lab.db" in box.text()
        assert f"{expected_photo_only} of the {expected_all} photos" in box.informativeText()
        assert not box.checkBox().isChecked()
        if all_photos:
            box.checkBox().click()
        key(box, "Return")  # the default button: Re-match
    return handle


@covers("rematch_photos")
def test_rematch_calls_photo_only_specimens_from_the_learned_photos_and_the_table_shows_it(
        qtbot, learned_window, modal):
    window, barcoded = learned_window
    before = _shown(window)
    window.open_specimen(window.project.specimen_id("trap-0"))
    qtbot.waitUntil(lambda: window.detail_view.photo.has_photo, timeout=10_000)
    assert window.actions["rematch_photos"].isEnabled()
    modal.next(_answer(len(PHOTO_ONLY), len(PHOTO_ONLY) + BARCODED_WITH_PHOTO, all_photos=False))
    with qtbot.waitSignal(window.photosRematched, timeout=120_000) as blocker:
        window.actions["rematch_photos"].trigger()
        modal.check()
        assert not window.actions["rematch_photos"].isEnabled()  # one at a time
        assert not window.actions["learn_photos"].isEnabled()
    result = blocker.args[0]
    assert result is not None, window.last_rematch_message
    assert (result.status, result.scope, result.photos, result.errors) == ("completed", "photo-only",
                                                                              len(PHOTO_ONLY), [])
    assert window.statusBar().currentMessage() == result.summary()
    assert result.summary().startswith(f"{len(PHOTO_ONLY)} photos re-matched against lab.db")
    assert window.actions["rematch_photos"].isEnabled()
    shown = _shown(window)
    for specimen, family in PHOTO_ONLY.items():  # each named from the learned photos of its own family
        assert shown[specimen]["Family"] == family, (specimen, before[specimen]["Family"])
    names = ("Order", "Family", "Genus", "Species", "BIN")
    changed = sum([shown[k][n] for n in names] != [before[k][n] for n in names] for k in PHOTO_ONLY)
    assert changed == result.calls_changed > 0  # the table shows every changed call
    for specimen in barcoded:  # their barcodes make their calls
        assert shown[specimen] == before[specimen]
    # the detail shown follows: the new call, and its photo still shown (a refresh does not blank it)
    assert window.detail_view.specimen_id == window.project.specimen_id("trap-0")
    assert window.detail_view.detail.specimen["family"] == PHOTO_ONLY["trap-0"]
    assert window.detail_view.photo.has_photo
    runs = window.project.import_runs()
    assert runs[0]["settings"]["operation"] == "rematch photos" and runs[0]["status"] == "completed"
    assert window.import_panel.title.text().startswith("Last run (rematch photos) ")  # the panel names the last run


def test_all_photos_and_cancel(qtbot, learned_window, modal):
    window, _ = learned_window
    every = len(PHOTO_ONLY) + BARCODED_WITH_PHOTO
    modal.next(_answer(len(PHOTO_ONLY), every, all_photos=True))
    with qtbot.waitSignal(window.photosRematched, timeout=120_000) as blocker:
        window.actions["rematch_photos"].trigger()
        modal.check()
    result = blocker.args[0]
    assert result is not None and (result.scope, result.photos) == ("all-photos", every)

    modal.next(_answer(len(PHOTO_ONLY), every, all_photos=False))
    with qtbot.waitSignal(window.photosRematched, timeout=120_000) as blocker:
        window.actions["rematch_photos"].trigger()
        modal.check()
        progress = window.rematch_progress
        assert progress is not None and progress.isVisible() and progress.windowTitle() == "Re-match photos"
        cancel = progress.findChild(QPushButton)
        assert cancel.text() == "Cancel"
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    assert blocker.args[0] is None
    assert window.statusBar().currentMessage() == "Re-matching photos cancelled: the photos re-matched so far are kept"
    runs = window.project.import_runs()
    assert runs[0]["status"] == "cancelled" and runs[0]["settings"]["operation"] == "rematch photos"
    assert window.actions["rematch_photos"].isEnabled()
    assert not window.actions["resume_import"].isEnabled()  # a re-match is not an import to resume


def test_a_project_without_photos_says_so(qtbot, window):
    window.actions["rematch_photos"].trigger()
    assert window.statusBar().currentMessage() == (
        "Re-match photos: This project has no photos that were read at import.")
    assert window.rematch_task is None


def test_use_it_and_rematch_after_learning_in_the_window(qtbot, imported, modal, tmp_path):
    """Learn photos, then the box's default button makes the new library the one in Settings and
    re-matches against it: no trip to Settings, no second command."""
    from engine import BARCODED_MIN_CONFIDENCE
    from bioscan_desktop.settings import Settings

    window, facts = imported
    window.quiet_errors = False  # the box after learning is what this test drives
    library = tmp_path / "lab photos.db"

    def fill(dialog):
        assert dialog.min_confidence.value() == BARCODED_MIN_CONFIDENCE
        type_into(dialog, str(library))
        key(dialog, "Return")

    offers = []

    def offer(box):
        assert isinstance(box, QMessageBox) and box.windowTitle() == "Learn photos from barcoded specimens"
        offers.append(box.defaultButton().text())
        key(box, "Return")

    modal.next(fill)
    with qtbot.waitSignal(window.photosLearned, timeout=180_000) as learned:
        window.actions["learn_photos"].trigger()
        modal.check()
    assert learned.args[0] is not None and learned.args[0].added > 0, window.last_learn_message
    modal.next(offer)
    with qtbot.waitSignal(window.photosRematched, timeout=180_000) as blocker:
        pass
    modal.check()
    assert offers == ["Use it and re-match photos"]
    result = blocker.args[0]
    assert result is not None, window.last_rematch_message
    assert window.settings.library_path == str(library) and Settings.load().library_path == str(library)
    # the status bar names the library now in use by its file, with its photo references
    qtbot.waitUntil(lambda: window.library_label.text().startswith("Library: lab photos.db ("), timeout=10_000)
    assert window.library_label.text().endswith(f", {learned.args[0].added} photos)")
    assert result.library == str(library) and result.scope == "photo-only"
    # the folder's readable photos: two of barcoded specimens, and trap-photo-1 of a photo-only specimen
    assert result.photos == 1 and result.errors == []
    assert window.statusBar().currentMessage() == result.summary()
