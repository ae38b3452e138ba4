"""An override with a name the library does not know, from the keyboard, and what the exports then say.

The override dialog shows the warning as the name is typed; saving asks "Use the unknown name", where
Esc goes back to the names; a confirmed unknown name is stored marked, and the CSV and the Darwin Core
Archive the window writes (read back here) carry the mark and the reviewer.
"""
from __future__ import annotations

import csv
import zipfile

from PySide6.QtWidgets import QApplication, QMessageBox

from engine.project import open_project
from tests.gui.conftest import key, press, save_file_as, type_into
from tests.gui.test_review import assert_in_step, tab_to


def focus_specimen(qtbot, window, key_name: str) -> dict:
    """Highlight a specimen's row and put the keyboard in the table, as a user clicking it would."""
    sid = window.project.specimen_id(key_name)
    window.results_view.select_row(window.results_model.find_row(sid))
    window.results_view.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.results_view.table, timeout=5_000)
    qtbot.waitUntil(lambda: window.detail_view.specimen_id == sid, timeout=5_000)
    return assert_in_step(window)


def _message_box_button(box: QMessageBox, text: str):
    """Tab to the button whose label starts with ``text`` (the box starts on its default button)."""
    for _ in range(8):
        if box.focusWidget() is not None and box.focusWidget().text().startswith(text):
            return
        key(box, "Tab")
    raise AssertionError(f"no button {text!r} in {[b.text() for b in box.buttons()]}")


def test_a_typo_in_an_override_is_warned_needs_confirmation_and_is_marked_in_the_exports(
        qtbot, imported, modal, tmp_path):
    window, facts = imported
    row = focus_specimen(qtbot, window, facts["known"][2].specimen_id)
    sid, family = row["id"], row["final_family"]
    assert family  # a called specimen: its family is one the library has
    typo = family[:-1] + "x"
    seen: dict[str, object] = {}

    def go_back(box):
        seen["question"] = box.text()
        seen["buttons"] = [b.text() for b in box.buttons()]
        key(box, "Escape")

    def use_unknown(box):
        _message_box_button(box, "Use the unknown name")
        key(box, "Space")

    def override(dialog):
        tab_to(dialog, dialog.fields["family"])
        type_into(dialog, typo)
        seen["warning"] = dialog.warning.text() if dialog.warning.isVisible() else ""
        modal.next(go_back)
        key(dialog, "Return")  # Save: the name is unknown, so it asks first
        seen["kept_open"] = dialog.isVisible() and dialog.focusWidget() is dialog.fields["family"]
        modal.next(use_unknown)
        key(dialog, "Return")
        seen["closed"] = not dialog.isVisible()

    modal.next(override)
    press(qtbot, window, "Ctrl+E")
    modal.check()
    assert seen["warning"].startswith(f"{typo}: not a family in the library; did you mean ")
    assert family in seen["warning"]
    assert seen["question"] == seen["warning"] and "Go back" in seen["buttons"]
    assert seen["kept_open"] and seen["closed"]
    with open_project(window.project_path, readonly=True) as p:
        assert p.specimen(sid).specimen["final_family"] == typo
        assert p.reviews()[sid]["override"]["unverified_names"] == {"family": typo}

    out = tmp_path / "all.csv"
    modal.next(save_file_as(out))
    with qtbot.waitSignal(window.exportFinished, timeout=30_000):
        press(qtbot, window, "Ctrl+Shift+E")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {r["specimen_id"]: r for r in csv.DictReader(fh)}
    r = rows[row["specimen_key"]]
    assert (r["reviewed_family"], r["reviewed_by"], r["unverified_names"]) == (typo, "tester", f"family {typo}")
    assert r["family"] == family and r["call_models"].startswith("bioscan-dna")  # the machine call and its model
    others = [v for k, v in rows.items() if k != row["specimen_key"]]
    assert all(v["unverified_names"] == "" for v in others)

    archive = tmp_path / "plate.dwca.zip"
    modal.next(save_file_as(archive))
    with qtbot.waitSignal(window.exportFinished, timeout=30_000):
        window.actions["export_dwca"].trigger()
    with zipfile.ZipFile(archive) as zf:
        occurrences = {o["catalogNumber"]: o for o in csv.DictReader(
            zf.read("occurrence.txt").decode().splitlines(), delimiter="\t")}
    o = occurrences[row["specimen_key"]]
    assert (o["family"], o["identifiedBy"], o["identificationVerificationStatus"]) == (
        typo, "tester", "unverified name")
    assert f"family {typo}" in o["taxonRemarks"]


def test_a_known_name_saves_at_once_and_is_not_marked(qtbot, imported, modal):
    window, facts = imported
    row = focus_specimen(qtbot, window, facts["known"][3].specimen_id)
    genus = row["final_genus"]
    seen = {}

    def override(dialog):
        tab_to(dialog, dialog.fields["species"])
        type_into(dialog, f"{genus} sp. nov. 1")  # a new species in a genus the library has: no question
        seen["warning"] = dialog.warning.isVisible()
        key(dialog, "Return")
        seen["closed"] = not dialog.isVisible()
        seen["no_box"] = not isinstance(QApplication.activeModalWidget(), QMessageBox)

    modal.next(override)
    press(qtbot, window, "Ctrl+E")
    modal.check()
    assert seen == {"warning": False, "closed": True, "no_box": True}
    with open_project(window.project_path, readonly=True) as p:
        review = p.reviews()[row["id"]]["override"]
    assert review["user"] == "tester" and review["unverified_names"] == {}
