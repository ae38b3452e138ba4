"""Reviewing from the keyboard: the actions follow the highlighted row, Accept moves on, dialogs save with Enter."""
from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from engine.project import open_project

from bioscan_desktop.models.results_table import COLUMNS
from bioscan_desktop.presenters import confidence_text, needs_review, shown_call
from tests.gui.conftest import activate, key, press, type_into
from tests.gui.test_actions import covers

COL = {c.header: i for i, c in enumerate(COLUMNS)}


def highlighted(window) -> dict:
    """The row the table highlights (its selection), read from the view, not from the window's state."""
    rows = window.results_view.table.selectionModel().selectedRows()
    assert len(rows) == 1, "exactly one row should be highlighted"
    return window.results_model.row(rows[0].row())


def assert_in_step(window) -> dict:
    """The detail panel (which the review actions use) shows the highlighted specimen."""
    row = highlighted(window)
    assert window.detail_view.specimen_id == row["id"], (window.detail_view.title.text(), row["specimen_key"])
    assert window.detail_view.title.text() == row["specimen_key"]
    return row


def annotations(window, specimen_id: int) -> list[tuple[str, str]]:
    with open_project(window.project_path, readonly=True) as p:
        return [(a["action"], a["note"]) for a in p.annotations(specimen_id)]


def tab_to(dialog, widget) -> None:
    for _ in range(12):
        if dialog.focusWidget() is widget:
            return
        key(dialog, "Tab")
    raise AssertionError(f"Tab never reaches {widget}")


def focus_table(qtbot, window, row: int = 0) -> None:
    window.results_view.select_row(row)
    window.results_view.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.results_view.table, timeout=5_000)


# ------------------------------------------------------------------------------ the shown call
def test_confidence_column_is_the_confidence_of_the_rank_the_table_names(imported):
    window, facts = imported
    model = window.results_model
    checked = 0
    for r in range(model.rowCount()):
        row = model.row(r)
        rank, name, conf = shown_call(row)
        text = model.data(model.index(r, COL["Confidence"]))
        if not rank:
            assert text == ""
            continue
        assert row[f"final_{rank}"] == name and text == confidence_text(row[f"{rank}_confidence"])
        tip = model.data(model.index(r, COL["Confidence"]), Qt.ItemDataRole.ToolTipRole)
        assert name in tip and text in tip
        checked += 1
    assert checked >= len(facts["known"])


def test_shown_call_is_the_finest_linnaean_rank_not_the_bin():
    row = {"final_species": "Aus bus", "species": "Aus bus", "species_confidence": 0.98,
           "final_bin_uri": "BOLD:AAA0001", "bin_uri": "BOLD:AAA0001", "bin_uri_confidence": 0.57,
           "confidence": 0.57, "final_genus": "Aus", "genus": "Aus", "genus_confidence": 0.99}
    assert shown_call(row) == ("species", "Aus bus", 0.98)
    overridden = dict(row, final_species="Aus novus")
    assert shown_call(overridden) == ("species", "Aus novus", None)  # the user's name has no machine confidence
    genus_only = {"final_genus": "Aus", "genus": "Aus", "genus_confidence": 0.91, "final_species": ""}
    assert shown_call(genus_only) == ("genus", "Aus", 0.91)
    assert shown_call({}) == ("", "", None)


def test_table_labels_identity_and_embedding_similarity_apart(imported):
    window, facts = imported
    model = window.results_model
    headers = [model.headerData(i, Qt.Orientation.Horizontal) for i in range(model.columnCount())]
    assert "Top match" not in headers and {"Identity", "Embedding similarity"} <= set(headers)
    tip = model.headerData(COL["Embedding similarity"], Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "not a percent identity" in tip
    for r in range(model.rowCount()):
        row = model.row(r)
        identity = model.data(model.index(r, COL["Identity"]))
        similarity = model.data(model.index(r, COL["Embedding similarity"]))
        if row["top_similarity"] is not None:
            assert "%" not in similarity and abs(float(similarity) - row["top_similarity"]) < 0.006
        if row["identity"] is not None:  # the tiny test library keeps its sequences
            assert identity == f"{row['identity']:.1%}"


def test_matches_tab_puts_the_scores_beside_the_names_and_says_what_they_are(qtbot, imported):
    window, facts = imported
    rec = facts["known"][0]
    window.open_specimen(window.project.specimen_id(rec.specimen_id))
    matches = window.detail_view.matches
    headers = [matches.horizontalHeaderItem(c).text() for c in range(matches.columnCount())]
    assert headers[:4] == ["#", "Identity", "Embedding\nsimilarity", "Species"]
    assert matches.item(0, 3).text() == rec.taxonomy.species and matches.item(0, 1).text().endswith("%")
    window.detail_view.tabs.setCurrentIndex(2)
    window.resizeDocks([window.detail_dock], [400], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: matches.isVisible())
    viewport = matches.viewport().width()
    for col in (1, 2, 3):  # the scores and the name they support, on screen in a 400-px dock
        assert matches.columnViewportPosition(col) + matches.columnWidth(col) <= viewport
    assert "identity" in window.detail_view.matches_note.text()

    # a library without sequences: no identity column, and the note says why
    detail = window.project.specimen(rec.specimen_id)
    for ms in detail.matches.values():
        for m in ms:
            m["identity"] = None
    window.detail_view.show_detail(detail)
    assert matches.isColumnHidden(1) and not matches.isColumnHidden(2)
    assert "keeps no sequences" in window.detail_view.matches_note.text()


# ------------------------------------------------------------------------------ moving by specimen
def test_home_end_and_page_keys_move_by_specimen(qtbot, imported):
    window, facts = imported
    focus_table(qtbot, window, 3)
    column = window.results_view.table.currentIndex().column()
    press(qtbot, window, "End")
    assert assert_in_step(window)["id"] == window.results_model.row(facts["specimens"] - 1)["id"]
    assert window.results_view.table.currentIndex().column() == column  # not the last column
    press(qtbot, window, "Home")
    assert assert_in_step(window)["id"] == window.results_model.row(0)["id"]
    press(qtbot, window, "PgDown")
    assert window.results_view.current_row > 1
    assert_in_step(window)
    press(qtbot, window, "PgUp")
    assert window.results_view.current_row == 0
    press(qtbot, window, "Down")
    assert window.results_view.current_row == 1 and assert_in_step(window)


# ------------------------------------------------------------------------------ reviewing by keyboard
@covers("accept", "override", "note")
def test_ten_specimens_reviewed_with_the_keyboard_only(qtbot, imported, modal):
    window, _ = imported
    focus_table(qtbot, window, 0)
    done = []
    for step in range(10):
        row = assert_in_step(window)
        sid, key_name = row["id"], row["specimen_key"]
        kind = ("accept", "note", "override")[step % 3]
        if kind == "accept" and not needs_review(row):
            kind = "note"
        if kind == "accept":
            press(qtbot, window, "Ctrl+Return")
            assert annotations(window, sid)[-1][0] == "accept"
            nxt = assert_in_step(window)  # moved on, highlight and detail together
            assert nxt["id"] != sid and needs_review(nxt)
        elif kind == "note":
            def write_note(dialog, key_name=key_name):
                assert key_name in dialog.windowTitle()  # the dialog names the highlighted specimen
                type_into(dialog, "first line", select_all=False)
                key(dialog, "Shift+Return")
                type_into(dialog, f"note {step}", select_all=False)
                key(dialog, "Return")
            modal.next(write_note)
            press(qtbot, window, "Ctrl+M")
            modal.check()
            assert annotations(window, sid)[-1] == ("annotate", f"first line\nnote {step}")
            press(qtbot, window, "Down")
        else:
            def override(dialog, key_name=key_name):
                assert key_name in dialog.windowTitle()
                assert dialog.focusWidget() in dialog.fields.values()  # a name field, ready to type
                tab_to(dialog, dialog.fields["species"])
                type_into(dialog, "Genus0 sp. keyboard")
                key(dialog, "Return")
            modal.next(override)
            press(qtbot, window, "Ctrl+E")
            modal.check()
            assert annotations(window, sid)[-1][0] == "override"
            with open_project(window.project_path, readonly=True) as p:
                assert p.specimen(sid).specimen["final_species"] == "Genus0 sp. keyboard"
            press(qtbot, window, "Down")
        done.append((kind, sid))
    assert len({sid for _, sid in done}) >= 7 and {k for k, _ in done} == {"accept", "note", "override"}


def test_esc_cancels_the_review_dialogs(qtbot, imported, modal):
    window, _ = imported
    focus_table(qtbot, window, 0)
    sid = assert_in_step(window)["id"]
    for shortcut in ("Ctrl+E", "Ctrl+M"):
        def cancel(dialog):
            type_into(dialog, "not saved")
            key(dialog, "Escape")
        modal.next(cancel)
        press(qtbot, window, shortcut)
        modal.check()
    assert annotations(window, sid) == []


def test_a_review_that_removes_the_row_from_a_filtered_view_moves_the_detail_with_the_highlight(
        qtbot, imported, modal):
    """The reported bug: after an override the highlight moved to another row but the detail stayed,
    so Ctrl+M then opened 'Add a note to' the old specimen."""
    window, _ = imported
    view = window.results_view
    view.review.setCurrentIndex(view.review.findData(""))  # Not reviewed
    n = window.results_model.rowCount()
    focus_table(qtbot, window, 2)
    gone = assert_in_step(window)

    def override(dialog):
        tab_to(dialog, dialog.fields["species"])
        type_into(dialog, "Genus1 sp. moved")
        key(dialog, "Return")
    modal.next(override)
    press(qtbot, window, "Ctrl+E")
    modal.check()
    assert window.results_model.rowCount() == n - 1  # it is reviewed now: out of this view
    now = assert_in_step(window)
    assert now["id"] != gone["id"] and window.results_view.current_row == 2  # the row that took its place
    titles = []
    modal.next(lambda dialog: titles.append(dialog.windowTitle()) or key(dialog, "Escape"))
    press(qtbot, window, "Ctrl+M")
    modal.check()
    assert titles == [f"Add a note to {now['specimen_key']}"]


def test_accept_goes_to_the_next_specimen_that_needs_review(qtbot, imported):
    window, facts = imported
    model = window.results_model
    reviewable = [r for r in range(model.rowCount()) if needs_review(model.row(r))]
    first, skipped = reviewable[0], reviewable[1]
    window.submit_review(model.row(skipped)["id"], "accept")  # already reviewed: Accept skips it
    focus_table(qtbot, window, first)
    press(qtbot, window, "Ctrl+Return")
    expected = next(r for r in range(first + 1, model.rowCount()) if needs_review(model.row(r)))
    assert expected > skipped and window.results_view.current_row == expected
    assert_in_step(window)


@covers("next_to_review", "copy_key", "filter_taxon")
def test_next_to_review_copy_and_filter_to_its_taxon(qtbot, imported):
    window, facts = imported
    model = window.results_model
    focus_table(qtbot, window, 0)
    press(qtbot, window, "Ctrl+J")
    row = assert_in_step(window)
    assert needs_review(row) and window.results_view.current_row == next(
        r for r in range(1, model.rowCount()) if needs_review(model.row(r)))
    press(qtbot, window, "Ctrl+Shift+C")
    assert QApplication.clipboard().text() == row["specimen_key"]
    rank, name, _ = shown_call(row)
    window.actions["filter_taxon"].trigger()
    assert name in window.results_view.chip.text()
    shown = [model.row(r) for r in range(model.rowCount())]
    assert row["id"] in {r["id"] for r in shown} and {r[f"final_{rank}"] for r in shown} == {name}
    assert_in_step(window)


def test_first_review_asks_for_a_name_and_enter_accepts_it(qtbot, imported, modal):
    window, _ = imported
    window.settings.user_name = ""
    model = window.results_model
    focus_table(qtbot, window, next(r for r in range(model.rowCount()) if needs_review(model.row(r))))
    row = assert_in_step(window)

    def name(dialog):
        type_into(dialog, "Dr Keyboard")
        key(dialog, "Return")
    modal.next(name)
    press(qtbot, window, "Ctrl+Return")
    modal.check()
    with open_project(window.project_path, readonly=True) as p:
        assert [(a["action"], a["user"]) for a in p.annotations(row["id"])] == [("accept", "Dr Keyboard")]


# ------------------------------------------------------------------------------ context menus
def _popup(qtbot):
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is not None, timeout=5_000)
    return QApplication.activePopupWidget()


def test_right_click_on_a_row_makes_it_current_and_offers_its_review_actions(qtbot, imported):
    window, _ = imported
    table = window.results_view.table
    focus_table(qtbot, window, 0)
    rect = table.visualRect(window.results_model.index(4, COL["Species"]))
    table.customContextMenuRequested.emit(rect.center())  # what a right-click (or the menu key) sends
    menu = _popup(qtbot)
    assert window.results_view.current_row == 4 and assert_in_step(window)
    texts = [a.text().replace("&", "") for a in menu.actions() if a.text()]
    assert texts[:3] == ["Accept call", "Override call…", "Add note…"]
    menu.close()


def test_right_click_on_the_header_chooses_columns(qtbot, imported):
    window, _ = imported
    header = window.results_view.table.horizontalHeader()
    header.customContextMenuRequested.emit(QPoint(10, 5))
    menu = _popup(qtbot)
    entries = {a.text(): a for a in menu.actions() if a.isCheckable()}
    assert set(entries) == {c.header for c in COLUMNS}
    assert not entries["Specimen"].isEnabled()  # the id column always stays
    entries["Data"].trigger()
    menu.close()
    assert window.results_view.table.isColumnHidden(COL["Data"])


def test_detail_buttons_act_on_the_shown_specimen(qtbot, imported, modal):
    window, _ = imported
    focus_table(qtbot, window, 1)
    row = assert_in_step(window)
    modal.next(lambda dialog: (type_into(dialog, "via button", select_all=False), key(dialog, "Return")))
    qtbot.mouseClick(window.detail_view.note_button, Qt.MouseButton.LeftButton)
    modal.check()
    assert annotations(window, row["id"]) == [("annotate", "via button")]


def test_focusing_the_table_with_no_current_row_highlights_the_row_the_detail_shows(qtbot, imported, tmp_path):
    """Qt makes the first row current (without selecting it) when the table gets the focus."""
    window, _ = imported
    assert window.open_project(window.project_path)  # reopened: nothing current
    assert window.detail_view.specimen_id is None
    activate(qtbot, window)
    window.results_view.search.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.results_view.search, timeout=5_000)
    press(qtbot, window, "Tab")  # on to the filter menus, then the table
    for _ in range(6):
        if QApplication.focusWidget() is window.results_view.table:
            break
        press(qtbot, window, "Tab")
    assert QApplication.focusWidget() is window.results_view.table
    qtbot.waitUntil(lambda: window.detail_view.specimen_id is not None, timeout=5_000)
    assert_in_step(window)
