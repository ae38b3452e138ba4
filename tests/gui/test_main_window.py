"""Drive the real window: import a folder, read the table, filter by the tree, open a specimen, review, export."""
from __future__ import annotations

import csv

from PySide6.QtCore import Qt

from engine.project import SpecimenFilter, open_project

from bioscan_desktop.models.results_table import COLUMNS, ResultsTableModel

COL = {c.header: i for i, c in enumerate(COLUMNS)}


def table_rows(model):
    """Every row of the table as {header: text}, read through the Qt model like a view does."""
    return [{h: model.data(model.index(r, i)) for h, i in COL.items()} for r in range(model.rowCount())]


def find_row(model, key):
    for r in range(model.rowCount()):
        if model.data(model.index(r, COL["Specimen"])) == key:
            return r
    raise AssertionError(f"{key} not in the table")


def test_import_fills_the_table_with_calls(imported):
    window, facts = imported
    model = window.results_model
    assert model.rowCount() == facts["specimens"]
    rows = {r["Specimen"]: r for r in table_rows(model)}
    for rec in facts["known"]:
        assert rows[rec.specimen_id]["Status"] == "Identified"
        assert rows[rec.specimen_id]["Species"] == rec.taxonomy.species
        assert rows[rec.specimen_id]["Confidence"].endswith("%")
    for rec in facts["novel"]:
        assert rows[rec.specimen_id]["Status"] == "Novel (species)"
        assert rows[rec.specimen_id]["Species"] == ""
        assert rows[rec.specimen_id]["Genus"] == rec.taxonomy.genus
    assert rows["BAD-1"]["Status"] == "Error"
    assert rows["trap-photo-1"]["Status"] == "Pending"
    assert rows["broken"]["Status"] == "Error"
    assert "specimens" in window.counts_label.text() and f"{len(facts['novel'])} novel" in window.counts_label.text()
    assert "Import finished" in window.import_panel.title.text()


def test_search_status_and_sorting_are_done_by_the_project(imported):
    window, facts = imported
    view, model = window.results_view, window.results_model
    view.status.setCurrentIndex(view.status.findData("novel"))
    assert model.rowCount() == len(facts["novel"])
    view.status.setCurrentIndex(0)
    view.search.setText("SYN1-")
    view._apply()  # what the typing pause triggers
    assert model.rowCount() == sum(r.specimen_id.startswith("SYN1-") for r in facts["known"] + facts["novel"])
    view.search.setText("")
    view._apply()
    view.table.sortByColumn(COL["Specimen"], Qt.SortOrder.DescendingOrder)
    keys = [r["Specimen"] for r in table_rows(model)]
    assert keys == sorted(keys, reverse=True)


def test_thumbnails_load_off_thread_for_rows_with_photos(qtbot, imported):
    window, facts = imported
    model = window.results_model
    row = find_row(model, facts["with_photo"][0])
    qtbot.waitUntil(lambda: model.data(model.index(row, COL["Photo"]), Qt.ItemDataRole.DecorationRole) is not None,
                    timeout=10_000)
    pixmap = model.data(model.index(row, COL["Photo"]), Qt.ItemDataRole.DecorationRole)
    assert max(pixmap.width(), pixmap.height()) == window.thumbnails.size  # the 160x120 photo, scaled down
    no_photo = find_row(model, facts["known"][-1].specimen_id)
    assert model.data(model.index(no_photo, COL["Photo"]), Qt.ItemDataRole.DecorationRole) is None


def test_selecting_a_tree_node_filters_the_table(imported):
    window, facts = imported
    taxon = {"order": "Synthoptera", "family": "Synthidae0"}
    assert window.tree_view.select_taxon(taxon)
    model = window.results_model
    with open_project(window.project_path, readonly=True) as p:
        expected = p.count_specimens(SpecimenFilter(taxon=taxon))
    assert 0 < model.rowCount() == expected < facts["specimens"]
    assert {r["Family"] for r in table_rows(model)} == {"Synthidae0"}
    assert "Synthidae0" in window.results_view.chip.text()
    window.results_view.clear_scope()
    assert model.rowCount() == facts["specimens"]


def test_detail_shows_evidence_and_reviews_are_stored(qtbot, imported):
    window, facts = imported
    rec = facts["known"][0]
    view = window.results_view
    view.table.selectRow(find_row(window.results_model, rec.specimen_id))
    detail = window.detail_view
    assert detail.title.text() == rec.specimen_id
    assert detail.calls.item(3, 1).text() == rec.taxonomy.species  # species row
    assert detail.matches.rowCount() > 0 and detail.matches.item(0, 3).text() == rec.taxonomy.species
    assert "bp after cleaning" in detail.sequence.toPlainText()
    qtbot.waitUntil(lambda: detail.photo.has_photo, timeout=10_000)  # its photo, loaded off-thread

    sid = detail.specimen_id
    detail.accept_button.click()
    assert detail.specimen_id != sid  # Accept moved on to the next specimen needing review
    window.results_view.select_specimen(sid)
    window.show_specimen(sid)
    override = {"genus": rec.taxonomy.genus, "species": f"{rec.taxonomy.genus} sp. nov. A"}
    assert window.submit_review(sid, "override", override, "checked genitalia")
    row = find_row(window.results_model, rec.specimen_id)
    assert window.results_model.data(window.results_model.index(row, COL["Species"])) == override["species"]
    assert window.results_model.data(window.results_model.index(row, COL["Review"])) == "Overridden"
    with open_project(window.project_path, readonly=True) as p:
        d = p.specimen(rec.specimen_id)
    assert [(a["action"], a["user"]) for a in d.annotations] == [("accept", "tester"), ("override", "tester")]
    assert d.specimen["species"] == rec.taxonomy.species  # the machine call is never overwritten
    assert d.specimen["final_species"] == override["species"]
    assert "you:" in detail.calls.item(3, 3).text()
    assert "checked genitalia" in detail.history.toPlainText()


def test_given_taxonomy_disagreement_is_flagged(imported):
    window, facts = imported
    rec = facts["novel"][0]  # the file names its species; the library does not know it
    window.show_specimen(window.project.specimen_id(rec.specimen_id))
    assert not window.detail_view.warning.isHidden()
    assert rec.taxonomy.species in window.detail_view.warning.text()


def test_export_writes_the_filtered_rows(qtbot, imported, tmp_path):
    window, facts = imported
    window.results_view.status.setCurrentIndex(window.results_view.status.findData("ok"))
    out = tmp_path / "ok.csv"
    with qtbot.waitSignal(window.exportFinished, timeout=10_000):
        window.export("csv", str(out))
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(facts["known"]) == window.results_model.rowCount()
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["specimen_id"]: r["species"] for r in rows} == {k.specimen_id: k.taxonomy.species
                                                                for k in facts["known"]}
    assert rows[0]["photo_paths"].endswith(f"{rows[0]['specimen_id']}.jpg")  # SYN0-0-0 has a photo


def test_report_and_darwin_core_exports(qtbot, imported, tmp_path):
    window, facts = imported
    for kind, name in (("report", "r.html"), ("dwca", "d.zip")):
        with qtbot.waitSignal(window.exportFinished, timeout=30_000):
            window.export(kind, str(tmp_path / name))
    assert "novel" in (tmp_path / "r.html").read_text(encoding="utf-8").lower()
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.zip") as zf:
        occurrences = zf.read("occurrence.txt").decode().splitlines()
    assert len(occurrences) - 1 == len(facts["known"]) + len(facts["novel"]) + 1  # + the pending photo-only


def test_cancelled_import_can_be_resumed(qtbot, window, specimen_folder):
    folder, facts = specimen_folder
    with qtbot.waitSignal(window.importFinished, timeout=120_000) as blocker:
        window.start_import([str(folder)])
        # cancel from the worker thread on the first progress report: deterministic, before any batch
        task = window.import_task
        task.signals.progress.connect(lambda *a: task.cancel(), Qt.ConnectionType.DirectConnection)
    assert blocker.args[0] is None
    assert "cancelled" in window.import_panel.title.text()
    assert window.actions["resume_import"].isEnabled() and not window.import_panel.resume_button.isHidden()
    assert window.results_model.rowCount() < facts["specimens"]
    with qtbot.waitSignal(window.importFinished, timeout=120_000) as blocker:
        window.import_panel.resume_button.click()
    assert blocker.args[0] is not None and blocker.args[0].status == "completed"
    assert window.results_model.rowCount() == facts["specimens"]
    assert window.import_panel.resume_button.isHidden()


def test_model_reads_pages_lazily(window, tmp_path):
    """Rows are fetched a page at a time: asking for the last row does not read the first pages."""
    calls = []
    model = ResultsTableModel()

    class FakeProject:
        def count_specimens(self, flt=None):
            return 100_000

        def list_specimens(self, flt=None, sort="id", descending=False, offset=0, limit=100):
            calls.append((offset, limit))
            return [{"id": offset + i, "specimen_key": f"S{offset + i}"} for i in range(limit)]

    model.set_project(FakeProject())
    assert model.rowCount() == 100_000
    assert model.row(99_999)["specimen_key"] == "S99999"
    assert calls == [(99_800, 200)]


def test_the_status_bar_says_when_the_library_searches_exactly_for_want_of_its_index(window, qtbot, monkeypatch):
    """A library large enough for the approximate index whose graphs are missing: the library
    label turns red and its tooltip says why and what to run (identification is slower)."""
    import engine.library

    qtbot.waitUntil(lambda: window.library_label.text().startswith("Library: tiny"), timeout=10_000)
    assert window.library_label.toolTip() == ""
    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 10)
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10)
    window._load_setup_info()
    qtbot.waitUntil(lambda: "approximate index" in window.library_label.toolTip(), timeout=10_000)
    tip = window.library_label.toolTip()
    assert "is absent" in tip and "bioscan library index" in tip
    assert "#c62828" in window.library_label.styleSheet()
