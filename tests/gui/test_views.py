"""Library tree, settings, screenshots, and the Qt-free helpers behind the views (the cluster map:
test_cluster_map.py)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from bioscan_desktop.progress_meter import ProgressMeter, format_duration


def test_library_tree_can_be_browsed(qtbot, window, synthetic_split):
    tree = window.tree_view
    with qtbot.waitSignal(window.treeLoaded, timeout=30_000):
        tree.source.setCurrentIndex(tree.source.findData("library"))
    assert tree.model.root.count == len(synthetic_split[0])
    assert tree.model.headerData(1, Qt.Orientation.Horizontal) == "References"
    orders = [tree.model.node(tree.model.index(r, 0)).name for r in range(tree.model.rowCount())]
    assert orders == ["Synthoptera"]


def test_settings_persist_in_the_config_dir(window, gui_settings):
    from dataclasses import replace

    from bioscan_desktop.settings import Settings, config_dir

    window.apply_settings(replace(gui_settings, min_confidence=0.8, device="cpu"))
    loaded = Settings.load()
    assert (config_dir() / "settings.json").is_file()
    assert loaded.min_confidence == 0.8 and loaded.device == "cpu"
    assert loaded.recent_projects[0] == window.project_path


def test_damaged_settings_file_falls_back_to_defaults(tmp_path, monkeypatch):
    from bioscan_desktop.settings import Settings

    monkeypatch.setenv("BIOSCAN_DESKTOP_CONFIG", str(tmp_path))
    (tmp_path / "settings.json").write_text("{not json", encoding="utf-8")
    assert Settings.load().min_confidence == Settings().min_confidence


def test_screenshot_renders_a_png(imported, tmp_path, monkeypatch):
    from PIL import Image

    from bioscan_desktop.app import main

    window, _ = imported
    monkeypatch.setenv("BIOSCAN_DESKTOP_CONFIG", str(tmp_path / "cfg"))
    out = tmp_path / "shot.png"
    assert main(["--screenshot", str(out), "--project", window.project_path, "--view", "detail",
                 "--size", "1280x800"]) == 0
    with Image.open(out) as img:
        assert img.size == (1280, 800)


def test_cancelling_a_task_stops_the_engine_call(qtbot):
    from bioscan_desktop import workers

    def slow(progress):
        for i in range(1000):
            progress(i, 1000, "working")
            if i == 5:
                task.cancel()
        return "finished"

    task = workers.Task(slow)
    with qtbot.waitSignal(task.signals.cancelled, timeout=5000):
        workers.start(task)


def test_task_failure_reaches_the_gui_as_a_message(qtbot):
    from engine.errors import InputFormatError

    from bioscan_desktop import workers

    def bad(progress):
        raise InputFormatError("x.fasta: not a FASTA file")

    task = workers.Task(bad)
    with qtbot.waitSignal(task.signals.failed, timeout=5000) as blocker:
        workers.start(task)
    assert blocker.args == ["x.fasta: not a FASTA file"]


def test_progress_meter_rate_and_time_left():
    now = [0.0]
    meter = ProgressMeter(clock=lambda: now[0])
    meter.update(0, 1000)
    now[0] = 2.0
    meter.update(200, 1000)
    assert meter.rate == pytest.approx(100.0)
    assert meter.eta == pytest.approx(8.0)
    assert meter.text("records") == "200 of 1,000 records · 100/s · about 8 s left · 2 s elapsed"
    assert format_duration(3725) == "1 h 02 min"


def test_table_filter_adds_confidence_and_ids_to_the_project_query(imported):
    from bioscan_desktop.filters import TableFilter

    window, facts = imported
    p = window.project
    everything = p.count_specimens()
    high = p.count_specimens(TableFilter(min_confidence=0.9))
    low = p.count_specimens(TableFilter(max_confidence=0.9))
    assert high + low == everything  # NULL confidence (errors, pending) counts as low
    some = [r["id"] for r in p.list_specimens(limit=7)]
    assert p.count_specimens(TableFilter(ids=some, status="ok")) == sum(
        r["status"] == "ok" for r in p.list_specimens(limit=7))


def test_hovering_a_map_point_names_it_without_shrinking_the_map(qtbot, imported):
    import numpy as np
    from matplotlib.backend_bases import MouseEvent

    window, _ = imported
    with qtbot.waitSignal(window.clusterMapReady, timeout=300_000):
        window.compute_cluster_map()
    view = window.cluster_view
    qtbot.waitUntil(lambda: view._canvas is not None and view._canvas.isVisible())
    view._canvas.draw()
    box = view.ax.get_position().bounds
    # the point nearest the right edge: its label would stick out of the axes
    i = int(np.argmax(view.map.xy[:, 0]))
    x, y = view.ax.transData.transform(view.map.xy[i])
    MouseEvent("motion_notify_event", view._canvas, x, y)._process()
    view._canvas.draw()
    assert view.hover.text() == view.point_text(i)
    assert view.ax.get_position().bounds == pytest.approx(box)
    window.open_project(window.project_path)  # the label goes with the project
    assert view.hover.text() == ""
