"""Tools > Learn photos from barcoded specimens: the real action, its dialog, the background job."""
from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from tests.gui.conftest import key, type_into
from tests.gui.test_actions import covers


def _barcoded_photos(project_path, min_confidence: float) -> tuple[set[str], int]:
    """(specimen keys, photos) the project's barcode calls name at ``min_confidence`` at order, read
    straight from the project file (what the engine should learn)."""
    import sqlite3

    con = sqlite3.connect(project_path)
    rows = con.execute(
        "SELECT s.specimen_key, count(DISTINCT p.id) FROM specimens s JOIN items p ON p.specimen_id = s.id "
        "AND p.modality = 'photo' AND p.status IN ('ok', 'novel', 'pending') WHERE EXISTS (SELECT 1 FROM items d "
        "JOIN calls c ON c.item_id = d.id WHERE d.specimen_id = s.id AND d.modality = 'dna' AND c.rank = 'order' "
        "AND c.name != '' AND c.confidence >= ?) GROUP BY s.id", [min_confidence]).fetchall()
    con.close()
    return {k for k, _ in rows}, sum(n for _, n in rows)


def _fill(library, expected_confidence: float):
    """The dialog, filled from the keyboard: the default threshold is kept, the library typed."""
    def handle(dialog):
        assert dialog.windowTitle() == "Learn photos from barcoded specimens"
        assert dialog.min_confidence.value() == expected_confidence
        type_into(dialog, str(library))
        assert "A new library, a copy of" in dialog.note.text()
        key(dialog, "Return")
    return handle


@covers("learn_photos")
def test_learning_adds_the_barcoded_specimens_photos_to_a_new_library_with_provenance(qtbot, imported, modal,
                                                                                        tmp_path):
    from engine import BARCODED_MIN_CONFIDENCE, ReferenceLibrary

    window, facts = imported
    specimens, photos = _barcoded_photos(window.project_path, BARCODED_MIN_CONFIDENCE)
    assert specimens and specimens <= set(facts["with_photo"])  # the fixture's paired photos, barcodes called
    library = tmp_path / "lab photos.db"
    modal.next(_fill(library, BARCODED_MIN_CONFIDENCE))
    with qtbot.waitSignal(window.photosLearned, timeout=180_000) as blocker:
        window.actions["learn_photos"].trigger()
        modal.check()
        assert not window.actions["learn_photos"].isEnabled()  # one at a time
    result = blocker.args[0]
    assert result is not None, window.last_learn_message
    assert (result.added, result.specimens, result.created) == (photos, len(specimens), True)
    expected = f"{photos} photo references added from {len(specimens)} specimens; {len(result.skipped)} skipped"
    assert window.statusBar().currentMessage().startswith(expected)
    assert window.actions["learn_photos"].isEnabled()
    lib = ReferenceLibrary.open(library)
    try:
        refs = lib.references("image")
        assert len(refs.record_ids) == photos and {r.split(":")[0] for r in refs.record_ids} == specimens
        assert lib.count("dna") == ReferenceLibrary.open(window.settings.library_path).count("dna")  # a copy of the base
        sources = [json.loads(s) for (s,) in lib.db.execute("SELECT source FROM refs WHERE modality = 'image'")]
    finally:
        lib.close()
    assert {s["specimen"] for s in sources} == specimens
    assert all(s["project"] == "test.bioscan.db" and "barcode" in s["call"] for s in sources)


def test_cancel_leaves_no_library_file(qtbot, imported, modal, tmp_path):
    from engine import BARCODED_MIN_CONFIDENCE

    window, _ = imported
    library = tmp_path / "cancelled.db"
    modal.next(_fill(library, BARCODED_MIN_CONFIDENCE))
    with qtbot.waitSignal(window.photosLearned, timeout=180_000) as blocker:
        window.actions["learn_photos"].trigger()
        modal.check()
        progress = window.learn_progress
        assert progress is not None and progress.isVisible()
        cancel = progress.findChild(QPushButton)
        assert cancel.text() == "Cancel"
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    assert blocker.args[0] is None
    assert window.statusBar().currentMessage() == "Learning photos cancelled: the library was not changed"
    assert not library.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith("cancelled")]
