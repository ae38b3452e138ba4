"""Entry point of `bioscan-desktop`: arguments, QApplication, the main window; --screenshot renders and exits.

Start-up imports only Qt, the engine's light modules and the window; ONNX Runtime, scikit-learn,
scranpy (UMAP) and matplotlib load when first needed.
"""
from __future__ import annotations

import argparse
import sys
import time

VIEWS = ("table", "tree", "cluster", "detail")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bioscan-desktop", description="BIOSCAN Desktop: identify insect specimens offline")
    p.add_argument("project", nargs="?", help="project database to open (.bioscan.db)")
    p.add_argument("--project", dest="project_opt", metavar="P.db", help="project database to open")
    p.add_argument("--import", dest="import_folder", metavar="FOLDER", help="import this folder on start")
    p.add_argument("--screenshot", metavar="PATH", help="render the window offscreen to a PNG and exit")
    p.add_argument("--view", choices=VIEWS, default="table", help="view to show in the screenshot")
    p.add_argument("--size", default="1440x900", help="window size WxH for the screenshot (default 1440x900)")
    p.add_argument("--exit-when-ready", action="store_true", help=argparse.SUPPRESS)  # benchmarks/gui_startup.py
    return p


def _wait_for(app, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def take_screenshot(app, window, path: str, view: str, timeout_s: float = 600.0) -> int:
    """Show the view asked for, wait for its background work, and save the window as a PNG."""
    from bioscan_desktop import workers

    def idle() -> bool:
        return not workers.running()

    _wait_for(app, idle, timeout_s)
    if window.project is not None and window.results_model.count:
        window.results_view.select_first()
        _wait_for(app, idle, timeout_s)
    if view == "tree":
        window.tree_view.tree.expandToDepth(1)
        window.tree_view.select_taxon(_largest_taxon(window.tree_view.model))
        window.results_view.select_first()
    elif view == "cluster" and window.project is not None:
        window.compute_cluster_map()
        _wait_for(app, lambda: window.cluster_task is None, timeout_s)
    elif view == "detail":  # the review queue of novel specimens, if there are any
        status = window.results_view.status
        status.setCurrentIndex(status.findData("novel"))
        if not window.results_model.count:
            status.setCurrentIndex(0)
        window.results_view.select_first()
        _wait_for(app, idle, timeout_s)
        window.detail_view.tabs.setCurrentIndex(0 if window.detail_view.photo.has_photo else 1)
    _wait_for(app, idle, timeout_s)
    for _ in range(5):  # let thumbnails arrive and repaint
        app.processEvents()
        time.sleep(0.05)
    ok = window.grab().save(path)
    print(f"wrote {path}" if ok else f"could not write {path}", file=sys.stderr)
    return 0 if ok else 1


def _largest_taxon(model) -> dict[str, str]:
    """{order, family} of the most populous called family, to show the tree filtering the table."""
    best, taxon = -1, {}
    for order in model.root.children:
        for family in order.children:
            if order.name and family.name and family.count > best:
                best, taxon = family.count, {"order": order.name, "family": family.name}
    return taxon


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.screenshot:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from bioscan_desktop.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("BIOSCAN Desktop")
    app.setOrganizationName("BIOSCAN")
    window = MainWindow()
    if args.screenshot:
        w, h = (int(x) for x in args.size.lower().split("x"))
        window.resize(w, h)
    project = args.project_opt or args.project
    if project:
        window.open_project(project)
    window.show()
    if args.import_folder:
        window.start_import([args.import_folder])
    if args.screenshot:
        return take_screenshot(app, window, args.screenshot, args.view)
    if args.exit_when_ready:
        def ready() -> None:
            heavy = [m for m in ("onnxruntime", "sklearn", "scranpy", "matplotlib", "torch") if m in sys.modules]
            print(f"ready {time.time():.6f} heavy={','.join(heavy)}", flush=True)
            window.close()
            app.quit()

        QTimer.singleShot(0, ready)  # runs once the event loop is up and the window is painted
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
