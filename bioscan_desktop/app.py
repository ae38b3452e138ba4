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
    p.add_argument("--import", dest="import_folder", metavar="FOLDER",
                   help="import this folder on start (into --project, created if needed)")
    p.add_argument("--quit-when-done", action="store_true",
                   help="with --import: quit when the import ends (exit code 0 when it completed, else 1 "
                        "with the reason on stderr)")
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
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quit_when_done and not args.import_folder:
        parser.error("--quit-when-done needs --import FOLDER")
    if args.screenshot:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from bioscan_desktop.qt_platform import check_qt_platform

    problem = check_qt_platform()
    if problem:
        print(problem, file=sys.stderr)
        return 1

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from bioscan_desktop.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("BIOSCAN Desktop")
    app.setOrganizationName("BIOSCAN")
    window = MainWindow()
    if args.quit_when_done:
        window.quiet_errors = True  # a scripted run: reasons go to stderr, no dialog waits for a click
    if args.screenshot:
        w, h = (int(x) for x in args.size.lower().split("x"))
        window.resize(w, h)
    project = args.project_opt or args.project
    if project and not window.open_project(project, create=bool(args.import_folder)):
        if args.import_folder:  # never import into another file than the one asked for
            print(f"bioscan-desktop: {window.statusBar().currentMessage()}", file=sys.stderr)
            window.close()
            return 1
    window.show()
    if args.import_folder and not args.screenshot:
        return _run_import(app, window, args.import_folder, args.quit_when_done)
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


def _run_import(app, window, folder: str, quit_when_done: bool) -> int:
    """Import a folder through the Import panel's job; with quit_when_done, exit when it ends."""
    from pathlib import Path

    if not Path(folder).exists():
        print(f"bioscan-desktop: {folder}: no such folder", file=sys.stderr)
        if quit_when_done:
            window.close()
            return 1
    result: dict[str, int] = {}
    if quit_when_done:
        def finished(report) -> None:
            ok = report is not None and report.status == "completed"
            if ok:
                print(f"{window.project_path}: {window.last_import_message}", file=sys.stderr)
            else:
                print(f"bioscan-desktop: {window.last_import_message or 'the import did not complete'}",
                      file=sys.stderr)
            result["code"] = 0 if ok else 1
            window.close()
            app.quit()

        window.importFinished.connect(finished)
    if not window.start_import([folder]):
        print(f"bioscan-desktop: the import could not start ({window.statusBar().currentMessage() or 'see above'})",
              file=sys.stderr)
        if quit_when_done:
            window.close()
            return 1
    code = app.exec()
    return result.get("code", code)


if __name__ == "__main__":
    sys.exit(main())
