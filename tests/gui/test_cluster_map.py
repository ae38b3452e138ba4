"""Cluster map: putative species of an imported project, the headline, selecting into the table, clear()."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture
def mapped(qtbot, imported):
    window, facts = imported
    with qtbot.waitSignal(window.clusterMapReady, timeout=300_000):
        window.compute_cluster_map()
    assert window.cluster_view.map is not None, window.cluster_view.info.text()
    return window, facts


def _table_ids(window) -> set[int]:
    model = window.results_model
    return {model.row(r)["id"] for r in range(model.rowCount())}


def test_headline_counts_putative_species_and_those_without_a_close_match(mapped):
    from bioscan_desktop.cluster_text import headline

    window, facts = mapped
    view = window.cluster_view
    m = view.map
    keys = m.specimen_keys
    barcoded = {r.specimen_id for r in facts["known"] + facts["novel"]}
    assert barcoded <= set(keys) and len(keys) == len(set(keys))  # every barcoded specimen, once
    assert m.sources.count("dna") == len(barcoded)
    species = {r.specimen_id: r.taxonomy.species for r in facts["known"] + facts["novel"]}
    clusters_of_barcodes = {int(c) for k, c in zip(keys, m.labels) if k in barcoded}
    assert len(clusters_of_barcodes) == len(set(species.values()))  # one putative species per species
    unmatched = m.no_close_match()
    novel = {r.specimen_id for r in facts["novel"]}  # species the library lacks
    assert unmatched
    for cid in unmatched:
        members = [k for k, c in zip(keys, m.labels) if c == cid]
        assert sum(k in novel for k in members) > len(members) / 2
    assert view.headline.text() == headline(m) == f"{m.n_clusters} putative species ({len(unmatched)} with no close " \
                                                  "library match)"
    assert "by their barcodes" in view.info.text()


def test_a_cluster_picked_or_clicked_fills_the_table_with_its_specimens(qtbot, mapped):
    window, _ = mapped
    view = window.cluster_view
    m = view.map
    cid = m.no_close_match()[0]
    view.picker.activated.emit(view.picker.findData(cid))  # the picker lists unmatched species first
    assert view.picker.findData(cid) == 1
    assert window.tabs.currentWidget() is window.results_view
    assert _table_ids(window) == set(m.members(cid))
    assert "putative species" in window.results_view.chip.text()
    # a click on a point (press and release in place) selects that point's cluster and opens the specimen
    window.tabs.setCurrentWidget(view)
    view._canvas.draw()
    i = int(np.flatnonzero(m.labels != cid)[0])
    x, y = view.ax.transData.transform(m.xy[i])
    event = SimpleNamespace(inaxes=view.ax, x=x, y=y, button=1)
    with qtbot.waitSignal(view.specimenClicked) as clicked:
        view._on_press(event)
        view._on_release(event)
    assert clicked.args == [m.specimen_ids[i]]
    assert _table_ids(window) == set(m.members(int(m.labels[i]))) == set(view.selected_ids)
    # a lasso or box selects the points inside it
    mask = np.zeros(len(m.xy), dtype=bool)
    mask[:5] = True
    view.select_points(mask, "box")
    assert _table_ids(window) == {m.specimen_ids[j] for j in range(5)}
    assert "selected on the map" in window.results_view.chip.text()
    assert view.point_text(0).startswith(m.rows[m.specimen_ids[0]]["specimen_key"] + ": ")


def test_clear_resets_map_selection_and_hover(mapped):
    window, _ = mapped
    view = window.cluster_view
    view.select_cluster(0)
    view.hover.setText(view.point_text(0))
    assert view.selected_ids and view.headline.text() and view.picker.count() > 1
    view.clear()
    assert view.map is None and view.selected_ids == []
    assert view.hover.text() == "" and view.headline.text() == ""
    assert view.picker.count() == 1 and not view.picker.isEnabled()
    assert view.stack.currentWidget() is view.placeholder
    view.select_cluster(0)  # nothing to select: no signal, no error
    assert view.selected_ids == []


def test_a_reopened_project_shows_its_cached_map_without_computing(qtbot, mapped, monkeypatch):
    import engine.cluster.project as cp

    window, _ = mapped
    path, before = window.project_path, window.cluster_view.map
    window.close_project()
    assert window.cluster_view.map is None

    def no_compute(*args, **kwargs):
        raise AssertionError("the map was computed again on reopen")

    monkeypatch.setattr(cp, "_compute_species", no_compute)
    with qtbot.waitSignal(window.clusterMapReady, timeout=30_000):
        assert window.open_project(path)
    again = window.cluster_view.map
    assert again is not None and list(again.labels) == list(before.labels)
    assert window.cluster_view.headline.text().endswith("library match)")
