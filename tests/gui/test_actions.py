"""Every command of the window, through the way a user reaches it: shortcut, toolbar button or menu.

The wiring test triggers each declared action by each of its routes and checks the handler got
the action's own arguments (a QAction's ``checked`` flag once reached choose_export as its
``kind``). The behaviour tests then use the real handlers, fill their dialogs from the keyboard,
and check what the user sees or gets (files are opened and read back).
"""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMenu

from bioscan_desktop.actions import ACTIONS, ACTIONS_BY_ID, MENUS, ROW_MENU, TOOLBAR
from tests.gui.conftest import activate, key, press, save_file_as, type_into

COVERED: set[str] = set()  # actions whose behaviour a test below checks (test_every_action_has_a_behaviour_test)


def covers(*ids: str):
    COVERED.update(ids)
    return lambda fn: fn


def menu_actions(window) -> dict[str, QMenu]:
    """action id -> the menu it is in, read from the real menu bar."""
    out = {}

    def walk(menu: QMenu) -> None:
        for act in menu.actions():
            if act.menu() is not None:
                walk(act.menu())
            elif act.objectName():
                out[act.objectName()] = menu
    for act in window.menuBar().actions():
        walk(act.menu())
    return out


# ------------------------------------------------------------------------------ wiring
@pytest.fixture
def recording_window(qtbot, gui_settings, monkeypatch):
    """A window whose handlers only record their calls, every action enabled."""
    from bioscan_desktop.main_window import MainWindow

    calls: list[tuple[str, tuple]] = []
    for spec in ACTIONS:
        monkeypatch.setattr(MainWindow, spec.handler,
                            lambda self, *args, name=spec.handler: calls.append((name, args)), raising=True)
    win = MainWindow(gui_settings)
    win.quiet_errors = True
    qtbot.addWidget(win)
    win.show()
    activate(qtbot, win)
    for act in win.actions.values():
        act.setEnabled(True)
    return win, calls


def test_every_shortcut_toolbar_button_and_menu_entry_calls_its_handler(qtbot, recording_window):
    window, calls = recording_window
    in_menu = menu_actions(window)
    for spec in ACTIONS:
        expected = (spec.handler, spec.args)
        assert spec.id in in_menu, f"{spec.id} is in no menu"
        entry = next(a for a in in_menu[spec.id].actions() if a.objectName() == spec.id)
        routes = {"menu": entry.trigger}
        if spec.shortcut:
            routes["shortcut"] = lambda: press(qtbot, window, spec.shortcut)
        if spec.id in TOOLBAR:
            button = window.toolbar.widgetForAction(window.actions[spec.id])
            routes["toolbar"] = lambda button=button: qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        for route, fire in routes.items():
            calls.clear()
            fire()
            assert calls == [expected], f"{spec.id} by {route}: {calls}"


def test_actions_are_where_the_tables_say_and_shortcuts_are_unique_and_documented(qtbot, window):
    in_menu = menu_actions(window)
    for title, entries in MENUS:
        for entry in entries:
            if entry in ACTIONS_BY_ID:
                assert in_menu[entry].title() == title
    toolbar = [a.objectName() for a in window.toolbar.actions() if a.objectName()]
    assert toolbar == [e for e in TOOLBAR if e != "-"]
    assert [a.objectName() for a in window.row_menu().actions() if a.objectName()] == [e for e in ROW_MENU if e != "-"]
    shortcuts = [window.actions[s.id].shortcut().toString() for s in ACTIONS if s.shortcut]
    assert len(shortcuts) == len(set(shortcuts)) and all(shortcuts)
    gui_md = (Path(__file__).resolve().parents[2] / "docs" / "gui.md").read_text(encoding="utf-8")
    documented = {k.strip() for line in gui_md.splitlines() if line.startswith("| ")
                  for k in line.split("|")[1].split(" / ")}
    for spec in ACTIONS:
        if spec.shortcut:
            assert spec.shortcut in documented, f"docs/gui.md does not list {spec.shortcut} ({spec.label})"


def test_actions_are_enabled_only_when_they_can_work(qtbot, window):
    window.close_project()
    assert not window.actions["export_csv"].isEnabled() and not window.actions["accept"].isEnabled()
    assert window.actions["import"].isEnabled() and window.actions["open_project"].isEnabled()


def test_every_action_has_a_behaviour_test():
    import tests.gui.test_projects  # noqa: F401 - their @covers register here too
    import tests.gui.test_review  # noqa: F401
    import tests.gui.test_learn_photos  # noqa: F401
    import tests.gui.test_rematch  # noqa: F401

    assert COVERED == {a.id for a in ACTIONS}, sorted({a.id for a in ACTIONS} ^ COVERED)


# ------------------------------------------------------------------------------ projects and import
@covers("new_project", "close_project", "open_project")
def test_new_close_and_open_project_from_the_keyboard(qtbot, imported, modal, tmp_path):
    window, facts = imported
    first = window.project_path
    new = tmp_path / "plate 42.bioscan.db"
    modal.next(save_file_as(new))
    press(qtbot, window, "Ctrl+N")
    modal.check()
    assert window.project_path == str(new.resolve()) and new.is_file()
    assert window.windowTitle().endswith("plate 42.bioscan.db")
    assert window.results_model.rowCount() == 0 and window.results_view.stack.currentIndex() == 0  # the drop zone

    press(qtbot, window, "Ctrl+W")
    assert window.project is None and window.windowTitle() == "BIOSCAN Desktop"
    assert not window.actions["export_csv"].isEnabled()

    modal.next(save_file_as(first))
    press(qtbot, window, "Ctrl+O")
    modal.check()
    assert window.project_path == first and window.results_model.rowCount() == facts["specimens"]


@covers("import")
def test_import_from_the_toolbar_with_a_typed_folder(qtbot, window, modal, specimen_folder):
    folder, facts = specimen_folder
    modal.next(save_file_as(folder))
    with qtbot.waitSignal(window.importFinished, timeout=120_000) as blocker:
        qtbot.mouseClick(window.toolbar.widgetForAction(window.actions["import"]), Qt.MouseButton.LeftButton)
    assert blocker.args[0] is not None and blocker.args[0].status == "completed"
    assert window.results_model.rowCount() == facts["specimens"]
    assert "Import finished" in window.import_panel.title.text()
    assert window.detail_view.specimen_id == window.results_view.current_specimen_id is not None


@covers("cancel_import", "resume_import")
def test_cancel_and_resume_from_the_file_menu(qtbot, window, specimen_folder):
    folder, facts = specimen_folder
    with qtbot.waitSignal(window.importFinished, timeout=120_000) as blocker:
        assert window.start_import([str(folder)])
        assert window.actions["cancel_import"].isEnabled() and not window.actions["open_project"].isEnabled()
        window.import_task.signals.progress.connect(lambda *a: window.actions["cancel_import"].trigger())
    assert blocker.args[0] is None and "cancelled" in window.import_panel.title.text()
    assert not window.actions["cancel_import"].isEnabled() and window.actions["resume_import"].isEnabled()
    with qtbot.waitSignal(window.importFinished, timeout=120_000) as blocker:
        window.actions["resume_import"].trigger()
    assert blocker.args[0].status == "completed"
    assert window.results_model.rowCount() == facts["specimens"]
    assert not window.actions["resume_import"].isEnabled()


# ------------------------------------------------------------------------------ exports
@covers("export_csv")
def test_export_csv_by_shortcut_writes_the_rows_the_table_shows(qtbot, imported, modal, tmp_path):
    window, facts = imported
    view = window.results_view
    view.status.setCurrentIndex(view.status.findData("novel"))
    out = tmp_path / "novel.csv"
    modal.next(save_file_as(out))
    with qtbot.waitSignal(window.exportFinished, timeout=30_000):
        press(qtbot, window, "Ctrl+Shift+E")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    shown = [window.results_model.row(r)["specimen_key"] for r in range(window.results_model.rowCount())]
    assert sorted(r["specimen_id"] for r in rows) == sorted(shown) == sorted(r.specimen_id for r in facts["novel"])
    assert {r["status"] for r in rows} == {"novel"}
    assert str(out) in window.statusBar().currentMessage()


@covers("export_dwca")
def test_export_darwin_core_archive_from_the_menu(qtbot, imported, modal, tmp_path):
    window, facts = imported
    out = tmp_path / "plate.dwca.zip"
    modal.next(save_file_as(out))
    with qtbot.waitSignal(window.exportFinished, timeout=30_000):
        window.actions["export_dwca"].trigger()
    with zipfile.ZipFile(out) as zf:
        occurrences = list(csv.DictReader(zf.read("occurrence.txt").decode().splitlines(), delimiter="\t"))
        assert "meta.xml" in zf.namelist()
    known = {r.specimen_id: r.taxonomy.species for r in facts["known"]}
    by_id = {o["catalogNumber"]: o for o in occurrences}
    assert set(known) <= set(by_id)
    assert all(by_id[k]["scientificName"] == species for k, species in known.items())


@covers("export_report")
@pytest.mark.parametrize("suffix", [".html", ".pdf"])
def test_export_report_by_shortcut_in_both_formats(qtbot, imported, modal, tmp_path, suffix):
    window, facts = imported
    out = tmp_path / f"plate.report{suffix}"
    modal.next(save_file_as(out))
    with qtbot.waitSignal(window.exportFinished, timeout=60_000):
        press(qtbot, window, "Ctrl+Shift+R")
    data = out.read_bytes()
    if suffix == ".pdf":
        assert data.startswith(b"%PDF") and len(data) > 2000
    else:
        text = data.decode("utf-8")
        assert "novel" in text.lower() and str(len(facts["novel"])) in text


# ------------------------------------------------------------------------------ views
@covers("show_table", "show_map")
def test_tab_shortcuts_switch_views(qtbot, window):
    press(qtbot, window, "Ctrl+2")
    assert window.tabs.currentWidget() is window.cluster_view
    press(qtbot, window, "Ctrl+1")
    assert window.tabs.currentWidget() is window.results_view


@covers("search", "clear_filters")
def test_search_from_the_keyboard_then_show_everything(qtbot, imported):
    window, facts = imported
    view = window.results_view
    press(qtbot, window, "Ctrl+F")
    assert QApplication.focusWidget() is view.search
    rec = facts["novel"][0]
    type_into(window, rec.specimen_id)
    press(qtbot, window, "Return")
    assert window.results_model.rowCount() == 1
    assert window.results_model.row(0)["specimen_key"] == rec.specimen_id
    assert QApplication.focusWidget() is view.table  # Enter goes to the results
    view.review.setCurrentIndex(view.review.findData(""))
    press(qtbot, window, "Ctrl+Shift+A")
    assert window.results_model.rowCount() == facts["specimens"]
    assert view.search.text() == "" and view.review.currentIndex() == 0


@covers("columns")
def test_column_chooser_by_keyboard_hides_a_column_and_the_layout_is_remembered(qtbot, imported, modal):
    from bioscan_desktop.main_window import MainWindow
    from bioscan_desktop.models.results_table import COLUMNS
    from bioscan_desktop.settings import Settings

    window, _ = imported
    qc = next(i for i, c in enumerate(COLUMNS) if c.header == "QC flags")

    def untick_qc_flags(dialog):
        while dialog.focusWidget().text() != "QC flags":
            key(dialog, "Tab")
        key(dialog, "Space")
        key(dialog, "Return")
    modal.next(untick_qc_flags)
    window.actions["columns"].trigger()
    modal.check()
    assert window.results_view.table.isColumnHidden(qc)
    species = next(i for i, c in enumerate(COLUMNS) if c.header == "Species")
    window.results_view.table.horizontalHeader().resizeSection(species, 222)
    window.close()
    again = MainWindow(Settings.load())
    qtbot.addWidget(again)
    assert again.results_view.table.isColumnHidden(qc)
    assert again.results_view.table.columnWidth(species) == 222
    again.results_view.reset_columns()
    assert not again.results_view.table.isColumnHidden(qc)


@covers("refresh")
def test_refresh_shows_what_another_program_wrote(qtbot, imported):
    from engine.project import open_project

    window, facts = imported
    rec = facts["known"][1]
    with open_project(window.project_path) as other:  # e.g. `bioscan` on the command line
        other.annotate(other.specimen_id(rec.specimen_id), "accept", user="someone else")
    press(qtbot, window, "F5")
    row = window.results_model.find_row(window.project.specimen_id(rec.specimen_id))
    assert window.results_model.row(row)["review"] == "accepted"


@covers("compute_map")
def test_compute_map_by_shortcut(qtbot, imported):
    window, _ = imported
    docks = (window.tree_dock.width(), window.detail_dock.width())
    with qtbot.waitSignal(window.clusterMapReady, timeout=300_000):
        press(qtbot, window, "Ctrl+K")
        assert window.tabs.currentWidget() is window.cluster_view
    assert window.cluster_view.map is not None, window.cluster_view.info.text()
    qtbot.wait(100)
    assert (window.tree_dock.width(), window.detail_dock.width()) == docks  # the map did not squeeze them
    assert window.width() == 1440


# ------------------------------------------------------------------------------ dialogs
@covers("settings")
def test_settings_dialog_saves_with_enter(qtbot, window, modal):
    from bioscan_desktop.settings import config_dir

    def rename(dialog):
        assert dialog.focusWidget() is dialog.user  # the field most people come to change
        type_into(dialog, "A. Tester")
        key(dialog, "Return")
    modal.next(rename)
    press(qtbot, window, "Ctrl+,")
    modal.check()
    assert window.settings.user_name == "A. Tester"
    assert json.loads((config_dir() / "settings.json").read_text())["user_name"] == "A. Tester"

    def cancel(dialog):
        type_into(dialog, "Nobody")
        key(dialog, "Escape")
    modal.next(cancel)
    press(qtbot, window, "Ctrl+,")
    modal.check()
    assert window.settings.user_name == "A. Tester"


@covers("shortcuts", "about", "quit")
def test_help_dialogs_close_from_the_keyboard_and_quit_closes_the_window(qtbot, window, modal):
    seen = {}

    def read_and_escape(dialog):
        seen["shortcuts"] = dialog.text()
        key(dialog, "Escape")
    modal.next(read_and_escape)
    press(qtbot, window, "F1")
    modal.check()
    for spec in ACTIONS:
        if spec.shortcut:
            assert spec.label in seen["shortcuts"]
    assert "Home/End" in seen["shortcuts"]

    def read_and_enter(dialog):
        seen["about"] = dialog.text.toPlainText()
        key(dialog, "Return")
    modal.next(read_and_enter)
    window.actions["about"].trigger()
    modal.check()
    from bioscan_desktop import __version__

    assert "BIOSCAN Desktop" in seen["about"] and __version__ in seen["about"]
    assert [t for _, t in modal.seen] == ["Keyboard shortcuts", "About BIOSCAN Desktop"]
    press(qtbot, window, "Ctrl+Q")
    assert not window.isVisible()
