"""Projects: nothing of one project leaks into the next; `--project P.db --import F --quit-when-done`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.project import open_project


@pytest.fixture
def second_project(tmp_path, specimen_folder, gui_settings):
    """Another project with the same specimens under other ids (imported in another order)."""
    from bioscan_desktop import jobs

    folder, facts = specimen_folder
    path = tmp_path / "other.bioscan.db"
    with open_project(path, create=True):
        pass
    jobs.run_import([str(folder / "photos"), str(folder)], str(path), gui_settings)
    return path, facts


def test_opening_another_project_resets_selections_filters_map_and_detail(qtbot, imported, second_project):
    window, facts = imported
    other, _ = second_project
    view = window.results_view
    ids = [window.results_model.row(r)["id"] for r in range(3)]
    window.cluster_view.selectionMade.emit(ids, "3 specimens selected on the map (lasso)")  # a lasso
    assert window.results_model.rowCount() == 3
    view.status.setCurrentIndex(view.status.findData("ok"))
    view.search.setText("SYN")
    window.cluster_view.hover.setText("SYN0-0-0: Genus0 species0")  # what hovering a point leaves
    view.select_first()
    assert window.detail_view.specimen_id is not None

    assert window.open_project(other)
    with open_project(other, readonly=True) as p:
        total = p.count_specimens()
    assert window.results_model.rowCount() == total == facts["specimens"]  # not filtered by A's ids
    assert window.results_model.filter.ids is None and not window.results_model.filter.taxon
    assert view.chip.isHidden() and view.search.text() == "" and view.status.currentIndex() == 0
    assert window.cluster_view.hover.text() == "" and window.cluster_view.map is None
    assert window.detail_view.specimen_id is None and not window.actions["accept"].isEnabled()
    assert view.current_specimen_id is None
    qtbot.wait(300)  # typing pauses and tree loads of the old project have had their time
    assert window.results_model.rowCount() == total and view.search.text() == ""


def test_no_other_project_can_be_opened_while_an_import_writes(qtbot, window, specimen_folder, tmp_path):
    folder, _ = specimen_folder
    first = window.project_path
    with qtbot.waitSignal(window.importFinished, timeout=120_000):
        window.start_import([str(folder)])
        assert not window.open_project(tmp_path / "elsewhere.bioscan.db", create=True)
        assert window.project_path == first and not (tmp_path / "elsewhere.bioscan.db").exists()
    with open_project(first, readonly=True) as p:
        assert p.count_specimens() > 0


# ------------------------------------------------------------------------------ the command line
def run_desktop(args: list[str], tmp_path: Path, gui_settings, timeout: float = 300) -> subprocess.CompletedProcess:
    """bioscan-desktop in a child process: offscreen, its own config (the test library and model), its own HOME."""
    gui_settings.save()  # into $BIOSCAN_DESKTOP_CONFIG (set by the fixture)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DOCUMENTS_DIR=str(home / "Documents"))
    return subprocess.run([sys.executable, "-m", "bioscan_desktop.app", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[2])


def projects_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.bioscan.db"))


def test_command_line_import_into_a_new_project_quits_with_0(tmp_path, specimen_folder, gui_settings):
    folder, facts = specimen_folder
    new = tmp_path / "new" / "plate 7.bioscan.db"
    new.parent.mkdir()
    done = run_desktop(["--project", str(new), "--import", str(folder), "--quit-when-done"], tmp_path, gui_settings)
    assert done.returncode == 0, done.stderr
    assert "Import finished" in done.stderr and str(new.resolve()) in done.stderr
    with open_project(new, readonly=True) as p:
        assert p.count_specimens() == facts["specimens"]
        assert p.import_runs()[0]["status"] == "completed"
    assert projects_under(tmp_path / "home") == []  # exactly that file, no project made elsewhere


def test_command_line_import_failures_exit_1_with_the_reason(tmp_path, specimen_folder, gui_settings):
    folder, _ = specimen_folder
    target = tmp_path / "p.bioscan.db"
    missing = run_desktop(["--project", str(target), "--import", str(tmp_path / "no-such-folder"),
                           "--quit-when-done"], tmp_path, gui_settings)
    assert missing.returncode == 1 and "no-such-folder" in missing.stderr

    not_a_project = tmp_path / "notes.db"
    not_a_project.write_text("my notes, not a database\n")
    refused = run_desktop(["--project", str(not_a_project), "--import", str(folder), "--quit-when-done"],
                          tmp_path, gui_settings)
    assert refused.returncode == 1 and "notes.db" in refused.stderr
    assert not_a_project.read_text() == "my notes, not a database\n"
    assert projects_under(tmp_path / "home") == []  # and nothing imported anywhere else

    usage = run_desktop(["--quit-when-done"], tmp_path, gui_settings)
    assert usage.returncode == 2 and "--import" in usage.stderr
