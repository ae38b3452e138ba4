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
