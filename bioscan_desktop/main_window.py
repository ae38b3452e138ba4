"""The main window: project, menus, toolbar, status bar, and the wiring between views and engine calls.

Views only show data and emit signals; this module answers them by calling the engine
(directly for millisecond reads, through bioscan_desktop.workers for anything slow).
"""
from __future__ import annotations

import base64
import binascii
import html
import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox, QDockWidget, QFileDialog, QInputDialog, QLabel, QMainWindow, QMenu, QMessageBox, QProgressDialog,
    QTabWidget, QToolBar,
)

from engine.errors import BioscanError
from engine.project import CALL_RANKS, TaxonNode, open_project

from bioscan_desktop import jobs, presenters, workers
from bioscan_desktop.actions import ACTIONS, MENUS, ROW_MENU, TOOLBAR, shortcut_rows
from bioscan_desktop.models.results_table import ResultsTableModel
from bioscan_desktop.settings import Settings, default_projects_dir
from bioscan_desktop.thumbnails import ThumbnailCache, pil_to_qimage
from bioscan_desktop.views.cluster_map import ClusterMapView
from bioscan_desktop.views.import_panel import DropZone, ImportPanel
from bioscan_desktop.views.results_table import THUMB_SIZE, ResultsView
from bioscan_desktop.views.specimen_detail import SpecimenDetailView
from bioscan_desktop.views.taxonomy_tree import TaxonomyTreeView

log = logging.getLogger(__name__)

PROJECT_SUFFIX = ".bioscan.db"
DETAIL_PHOTO_SIDE = 1600
LIVE_REFRESH_MS = 1500  # table and counts refresh while an import writes


class MainWindow(QMainWindow):
    projectOpened = Signal(str)
    importFinished = Signal(object)  # ImportReport, or None when it failed or was cancelled
    clusterMapReady = Signal()
    treeLoaded = Signal()
    exportFinished = Signal(str)
    photosLearned = Signal(object)  # BarcodedPhotos, or None when it failed or was cancelled
    photosRematched = Signal(object)  # RematchReport, or None when it failed or was cancelled
    reviewSaved = Signal(int, str)  # specimen id, action

    def __init__(self, settings: Settings | None = None):
        super().__init__()
        self.settings = settings or Settings.load()
        self.project = None
        self.project_path = ""
        self.setup_info = None
        self.import_task: workers.Task | None = None
        self.cluster_task: workers.Task | None = None
        self.learn_task: workers.Task | None = None
        self.learn_progress: QProgressDialog | None = None
        self.last_learn_message = ""
        self.rematch_task: workers.Task | None = None
        self.rematch_progress: QProgressDialog | None = None
        self.last_rematch_message = ""
        self.last_report = None
        self.last_import_message = ""
        self.quiet_errors = False  # True: errors go to the status bar and the log only (tests, scripted runs)
        self.setWindowTitle("BIOSCAN Desktop")
        self.setAcceptDrops(True)

        self.thumbnails = ThumbnailCache(THUMB_SIZE, parent=self)
        self.results_model = ResultsTableModel(self)
        self.results_model.thumbnails = self.thumbnails
        self.thumbnails.ready.connect(self.results_model.thumbnail_ready)
        self.drop_zone = DropZone()
        self.results_view = ResultsView(self.results_model, self.drop_zone)
        self.cluster_view = ClusterMapView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.results_view, "Specimens")
        self.tabs.addTab(self.cluster_view, "Cluster map")
        self.setCentralWidget(self.tabs)

        self.tree_view = TaxonomyTreeView()
        self.detail_view = SpecimenDetailView()
        self.import_panel = ImportPanel()
        self.tree_dock = self._dock("Taxonomy", self.tree_view, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.detail_dock = self._dock("Specimen", self.detail_view, Qt.DockWidgetArea.RightDockWidgetArea)
        self.import_dock = self._dock("Import", self.import_panel, Qt.DockWidgetArea.BottomDockWidgetArea)

        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self._make_status_bar()
        self._connect()
        self._restore_columns()

        self._live_timer = QTimer(self, interval=LIVE_REFRESH_MS)
        self._live_timer.timeout.connect(self._live_refresh)
        self.resize(1440, 900)
        self.resizeDocks([self.tree_dock, self.detail_dock], [290, 400], Qt.Orientation.Horizontal)
        self.resizeDocks([self.import_dock], [110], Qt.Orientation.Vertical)
        self._update_actions()
        self._load_setup_info()

    # ------------------------------------------------------------------------------------ layout
    def _dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.lower())
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _make_actions(self) -> None:
        """One QAction per ActionSpec (bioscan_desktop.actions); ``checked`` never reaches a handler."""
        self.actions: dict[str, QAction] = {}
        for spec in ACTIONS:
            act = QAction(spec.text, self)
            act.setObjectName(spec.id)
            if spec.shortcut:
                act.setShortcut(QKeySequence(spec.shortcut))
                act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            if spec.short:
                act.setIconText(spec.short)
            act.setToolTip(spec.label + (f" ({spec.shortcut})" if spec.shortcut else ""))
            act.setStatusTip(spec.tip)
            handler = getattr(self, spec.handler)
            act.triggered.connect(lambda _checked=False, handler=handler, args=spec.args: handler(*args))
            self.addAction(act)  # shortcuts work while the menus are closed and the toolbar hidden
            self.actions[spec.id] = act

    def _make_menus(self) -> None:
        mb = self.menuBar()
        for title, entries in MENUS:
            menu = mb.addMenu(title)
            for entry in entries:
                if entry == "-":
                    menu.addSeparator()
                elif entry == "@recent":
                    self.recent_menu = menu.addMenu("Open &recent")
                elif entry == "@docks":
                    for dock in (self.tree_dock, self.detail_dock, self.import_dock):
                        menu.addAction(dock.toggleViewAction())
                else:
                    menu.addAction(self.actions[entry])
        self._fill_recent()

    def _make_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("main toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for entry in TOOLBAR:
            if entry == "-":
                tb.addSeparator()
            else:
                tb.addAction(self.actions[entry])
        self.toolbar = tb
        self.addToolBar(tb)

    def _make_status_bar(self) -> None:
        sb = self.statusBar()
        self.counts_label = QLabel("")
        self.device_label = QLabel("Device: …")
        self.model_label = QLabel("DNA model: …")
        self.library_label = QLabel("Library: …")
        sb.addWidget(self.counts_label, 1)
        for w in (self.device_label, self.model_label, self.library_label):
            w.setStyleSheet("padding: 0 6px;")
            sb.addPermanentWidget(w)

    def _connect(self) -> None:
        rv = self.results_view
        rv.specimenSelected.connect(self.show_specimen)
        rv.selectionCleared.connect(self._table_emptied)
        rv.filterCleared.connect(self.tree_view.clear_selection)
        rv.rowMenuRequested.connect(self._row_menu)
        rv.columnsChanged.connect(self._remember_columns)
        self.drop_zone.importRequested.connect(self.choose_import_folder)
        self.drop_zone.openRequested.connect(self.choose_open_project)
        self.tree_view.taxonSelected.connect(self._taxon_selected)
        self.tree_view.reloadRequested.connect(lambda *_: self.reload_tree())
        self.detail_view.reviewRequested.connect(self.request_review)
        self.import_panel.cancelRequested.connect(self.cancel_import)
        self.import_panel.resumeRequested.connect(self.resume_import)
        self.import_panel.importRequested.connect(self.choose_import_folder)
        self.cluster_view.computeRequested.connect(self.compute_cluster_map)
        self.cluster_view.cancelRequested.connect(lambda: self.cluster_task and self.cluster_task.cancel())
        self.cluster_view.specimenClicked.connect(self.open_specimen)
        self.cluster_view.selectionMade.connect(self._map_selection)

    def action_conditions(self) -> dict[str, bool]:
        """When each kind of action is enabled (ActionSpec.enabled_when names a key)."""
        has_project = self.project is not None
        importing = self.import_task is not None
        detail = self.detail_view.detail
        idle = not importing and self.rematch_task is None  # both write the project under its import lock
        return {
            "always": True, "idle": idle, "importing": importing, "project": has_project,
            "project_idle": has_project and idle,
            "learnable": has_project and idle and self.learn_task is None,
            "rematchable": has_project and idle and self.learn_task is None,
            "resumable": has_project and not importing and self._resumable() is not None,
            "specimen": detail is not None,
            "acceptable": detail is not None and detail.specimen["status"] in presenters.REVIEWABLE_STATUSES,
        }

    def _update_actions(self) -> None:
        conditions = self.action_conditions()
        for spec in ACTIONS:
            self.actions[spec.id].setEnabled(conditions[spec.enabled_when])
        self.recent_menu.menuAction().setEnabled(conditions["idle"] and bool(self.settings.recent_projects))

    # ------------------------------------------------------------------------------------ projects
    def open_project(self, path: str | Path, create: bool = False) -> bool:
        """Open exactly ``path`` (``create``: make it if absent). Selections and filters start afresh."""
        if self.import_task is not None or self.rematch_task is not None:
            self._error("Cannot open another project", "An import or a re-match of photos is running; cancel it "
                        "or wait until it ends.")
            return False
        try:
            project = open_project(path, create=create)
        except BioscanError as exc:
            self._error("Cannot open the project", str(exc))
            return False
        self._leave_project()
        self.project, self.project_path = project, str(Path(path).resolve())
        self.settings.add_recent(self.project_path)
        self._save_settings()
        self._fill_recent()
        self.setWindowTitle(f"BIOSCAN Desktop — {Path(path).name}")
        self.thumbnails.set_project(self.project_path)
        self.results_model.set_project(project)
        self.reload_tree()
        self._show_cached_cluster_map()
        self._show_import_state()
        self._update_counts()
        self._update_actions()
        self.projectOpened.emit(self.project_path)
        return True

    def _leave_project(self) -> None:
        """Forget everything that belonged to the open project: its ids, selections, filters, map, detail."""
        if self.cluster_task is not None:
            self.cluster_task.cancel()
            self.cluster_task = None
        if self.project is not None:
            self.project.close()
        self.project, self.project_path = None, ""
        self.results_view.reset()
        self.tree_view.clear_selection()
        self.cluster_view.clear()
        self.detail_view.clear()
        self.last_report = None

    def close_project(self) -> None:
        if self.project is None or self.import_task is not None:
            return
        self._leave_project()
        self.setWindowTitle("BIOSCAN Desktop")
        self.thumbnails.set_project("")
        self.results_model.set_project(None)
        self.tree_view.model.set_tree(TaxonNode("root", "", 0))
        self.counts_label.setText("")
        self.import_panel.set_idle()
        self._update_actions()

    def choose_open_project(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", str(self._projects_dir()),
                                              f"BIOSCAN projects (*{PROJECT_SUFFIX} *.db);;All files (*)")
        if path:
            self.open_project(path)

    def choose_new_project(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project", str(self._projects_dir() / f"project{PROJECT_SUFFIX}"),
                                              f"BIOSCAN projects (*{PROJECT_SUFFIX})")
        if path:
            if not path.endswith(".db"):
                path += PROJECT_SUFFIX
            self.open_project(path, create=True)

    def _projects_dir(self) -> Path:
        if self.project_path:
            return Path(self.project_path).parent
        return default_projects_dir()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_projects:
            self.recent_menu.addAction(Path(p).name, lambda p=p: self.open_project(p)).setToolTip(p)
        self.recent_menu.setEnabled(bool(self.settings.recent_projects))

    def _auto_project_path(self, folder: str) -> Path:
        """A new project for a folder imported with no project open: named after the folder, never reused."""
        base = default_projects_dir()
        name = Path(folder).name or "project"
        path, n = base / f"{name}{PROJECT_SUFFIX}", 2
        while path.exists():
            path, n = base / f"{name}-{n}{PROJECT_SUFFIX}", n + 1
        return path

    # ------------------------------------------------------------------------------------ import
    def choose_import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a folder of barcodes and photos",
                                                  self.settings.last_folder or str(Path.home()))
        if folder:
            self.start_import([folder])

    def start_import(self, folders: list[str]) -> bool:
        if self.import_task is not None or self.rematch_task is not None or not folders:
            return False
        if self.project is None:
            path = self._auto_project_path(folders[0])
            if not self.open_project(path, create=True):
                return False
            self.statusBar().showMessage(f"New project saved as {path}", 10000)
        self.settings.last_folder = str(Path(folders[0]).parent)
        self._save_settings()
        self.last_import_message = ""
        task = workers.Task(jobs.run_import, list(folders), self.project_path, self.settings)
        task.signals.progress.connect(self.import_panel.set_progress)
        task.signals.finished.connect(self._import_done)
        task.signals.failed.connect(lambda msg: self._import_stopped(f"Import failed: {msg}"))
        task.signals.cancelled.connect(
            lambda: self._import_stopped("Import cancelled. Everything imported so far is kept."))
        self.import_task = task
        self.tree_view.set_busy("Importing: the tree is filled in when the import ends (the table fills in as it goes).")
        self.import_panel.start(list(folders))
        self.import_dock.show()
        workers.start(task, "heavy")
        self._live_timer.start()
        self._update_actions()
        return True

    def cancel_import(self) -> None:
        if self.import_task is not None:
            self.import_task.cancel()
            self.import_panel.cancelling()

    def resume_import(self) -> None:
        run = self._resumable()
        if run is not None:
            self.start_import(list(run["inputs"]))

    def _resumable(self):
        return jobs.resumable_run(self.project) if self.project is not None else None

    def _import_done(self, report) -> None:
        self.last_report = report
        if report.status == "completed":
            self._finish_import(f"Import finished: {report.summary()}")
        else:
            self._finish_import(f"Import {report.status}: {report.message or report.summary()}")
        self.importFinished.emit(report)

    def _import_stopped(self, message: str) -> None:
        self._finish_import(message)
        self.importFinished.emit(None)

    def _finish_import(self, message: str) -> None:
        self.last_import_message = message
        self.import_task = None
        self._live_timer.stop()
        self.refresh_all()
        self._show_import_state(message)
        self.statusBar().showMessage(message.split(":")[0], 8000)
        if self.detail_view.specimen_id is None:
            self.results_view.select_first()
        self._update_actions()

    def _show_import_state(self, message: str = "") -> None:
        run = self._resumable()
        resumable = ""
        if run is not None:
            resumable = (f"The last import ({run['started_at']}) was {run['status']}"
                         + (f": {run['message']}" if run.get("message") else "") + ". Resume continues where it stopped.")
        if not message and self.project is not None:
            runs = self.project.import_runs()
            operation = runs[0]["settings"].get("operation") if runs else None
            message = (f"Last {f'run ({operation})' if operation else 'import'} {runs[0]['started_at']}: "
                       f"{runs[0]['status']}." if runs
                       else "Drop a folder on the window, or click Import folder, to add specimens.")
        self.import_panel.set_idle(message or "No import running.", resumable)

    def _live_refresh(self) -> None:
        if self.project is not None:
            self.results_model.refresh()
            self._update_counts()

    # ------------------------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and all(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths and self.start_import(paths):
            event.acceptProposedAction()

    # ------------------------------------------------------------------------------------ refreshes
    def refresh_all(self) -> None:
        if self.project is None:
            return
        self.results_model.refresh()
        self._update_counts()
        self.reload_tree()
        sid = self.detail_view.specimen_id
        if sid is not None:
            self.show_specimen(sid, load_photo=False)

    def _update_counts(self) -> None:
        c = self.project.status_counts()
        total = sum(c.values())
        self.counts_label.setText(
            f"{total:,} specimens: {c['ok']:,} identified, {c['novel']:,} novel, {c['error']:,} errors, "
            f"{c['pending']:,} pending" if total else "No specimens yet")

    def reload_tree(self) -> None:
        if self.tree_view.current_source == "library":
            self.tree_view.set_busy("Loading the reference library…")
            task = workers.Task(jobs.library_tree, self.settings.library_path, self.tree_view.ranks)
            task.signals.finished.connect(self._library_tree_loaded)
        else:
            if self.project is None:
                return
            path = self.project_path
            task = workers.Task(jobs.project_trees, path, self.tree_view.ranks)
            task.signals.finished.connect(lambda trees, path=path: self._project_tree_loaded(path, trees))
        task.signals.failed.connect(self.tree_view.set_busy)
        workers.start(task, "light")

    def _project_tree_loaded(self, path: str, trees) -> None:
        if path != self.project_path or self.tree_view.current_source != "project":
            return  # an older project's tree, or the list shows the library meanwhile
        self.tree_view.set_project_tree(*trees)
        self.treeLoaded.emit()

    def _library_tree_loaded(self, tree) -> None:
        self.tree_view.set_library_tree(tree)
        self.treeLoaded.emit()

    def _taxon_selected(self, taxon: dict) -> None:
        self.results_view.set_taxon(taxon)
        self.tabs.setCurrentWidget(self.results_view)

    def _map_selection(self, ids: list, label: str) -> None:
        self.results_view.set_ids(ids, label)
        self.tree_view.clear_selection()
        self.tabs.setCurrentWidget(self.results_view)
        self.results_view.select_first()

    # ------------------------------------------------------------------------------------ views and filters
    def show_table(self) -> None:
        self.tabs.setCurrentWidget(self.results_view)
        self.results_view.table.setFocus()

    def show_map(self) -> None:
        self.tabs.setCurrentWidget(self.cluster_view)

    def focus_search(self) -> None:
        self.show_table()
        self.results_view.focus_search()

    def clear_filters(self) -> None:
        self.tree_view.clear_selection()
        self.results_view.clear_filters()

    def choose_columns(self) -> None:
        from bioscan_desktop.views.column_chooser import ColumnChooser
        from bioscan_desktop.models.results_table import COLUMNS, KEY_COLUMN

        dialog = ColumnChooser(self.results_view.column_visibility(), COLUMNS[KEY_COLUMN].header, self)
        if dialog.exec():
            for header, visible in dialog.visibility().items():
                self.results_view.set_column_visible(header, visible)

    def _restore_columns(self) -> None:
        try:
            state = base64.b64decode(self.settings.table_columns or "", validate=True)
        except (binascii.Error, ValueError):
            state = b""
        self.results_view.restore_header(state)

    def _remember_columns(self) -> None:
        self.settings.table_columns = base64.b64encode(self.results_view.header_state()).decode("ascii")

    def _row_menu(self, global_pos: QPoint) -> None:
        menu = self.row_menu()
        menu.popup(global_pos)

    def row_menu(self) -> QMenu:
        """The right-click menu of a table row: the actions of bioscan_desktop.actions.ROW_MENU."""
        menu = QMenu(self)
        for entry in ROW_MENU:
            if entry == "-":
                menu.addSeparator()
            else:
                menu.addAction(self.actions[entry])
        return menu

    # ------------------------------------------------------------------------------------ detail
    def current_specimen_id(self) -> int | None:
        """The specimen the actions apply to: the one in the detail panel (the table's current row)."""
        return self.detail_view.specimen_id

    def show_specimen(self, specimen_id: int, load_photo: bool = True) -> None:
        if self.project is None:
            return
        try:
            detail = self.project.specimen(specimen_id)
        except BioscanError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return
        self.detail_view.show_detail(detail)
        self.detail_dock.show()
        self._update_actions()
        if detail.specimen["n_photos"] and load_photo:
            path = self.project_path
            task = workers.Task(jobs.load_specimen_photo, path, specimen_id, DETAIL_PHOTO_SIDE, with_progress=False)
            task.signals.finished.connect(lambda result, path=path: self._detail_photo_loaded(path, result))
            workers.start(task, "light")

    def open_specimen(self, specimen_id: int) -> None:
        """Show a specimen chosen outside the table (the map): its row becomes current if the table shows it."""
        self.show_specimen(specimen_id)
        self.results_view.select_specimen(specimen_id)

    def _table_emptied(self) -> None:
        self.detail_view.clear()
        self._update_actions()

    def _detail_photo_loaded(self, path: str, result) -> None:
        from PySide6.QtGui import QPixmap

        if path != self.project_path:
            return  # ids are per project: this photo belongs to the previous one
        sid, image = result
        self.detail_view.show_photo(sid, None if image is None else QPixmap.fromImage(pil_to_qimage(image)))

    def copy_current_key(self) -> None:
        detail = self.detail_view.detail
        if detail is not None:
            QGuiApplication.clipboard().setText(detail.specimen["specimen_key"])
            self.statusBar().showMessage(f"Copied {detail.specimen['specimen_key']}", 4000)

    def filter_to_current_taxon(self) -> None:
        detail = self.detail_view.detail
        if detail is None:
            return
        rank, _, _ = presenters.shown_call(detail.specimen)
        if not rank:
            self.statusBar().showMessage("This specimen has no call to filter by", 5000)
            return
        ranks = CALL_RANKS[:CALL_RANKS.index(rank) + 1]
        taxon = {r: detail.specimen.get(f"final_{r}") or "" for r in ranks}
        self.tree_view.clear_selection()
        self.results_view.set_taxon(taxon)
        self.results_view.select_specimen(detail.specimen["id"])

    # ------------------------------------------------------------------------------------ review
    def review_current(self, action: str) -> bool:
        return self.request_review(self.current_specimen_id(), action)

    def request_review(self, specimen_id: int | None, action: str) -> bool:
        """Ask for what a review needs (a name, an override, a note) and store it; Accept then moves on."""
        from bioscan_desktop.views.review_dialogs import NoteDialog, OverrideDialog

        if specimen_id is None or self.project is None or not self._ensure_user_name():
            return False
        try:
            spec = self.project.specimen(specimen_id).specimen  # exactly this one, freshly read
        except BioscanError as exc:
            self._error("The review was not saved", str(exc))
            return False
        if action == "override":
            current = {r: (spec.get(f"final_{r}") or "") for r in CALL_RANKS}
            names, problem = self._library_taxonomy()
            dialog = OverrideDialog(spec["specimen_key"], current, self.settings.user_name, self,
                                    check=names.unknown if names is not None else None, check_problem=problem)
            return bool(dialog.exec()) and self.submit_review(specimen_id, "override", dialog.taxonomy(),
                                                               dialog.note_text(), dialog.unverified_names())
        if action == "annotate":
            dialog = NoteDialog(spec["specimen_key"], self.settings.user_name, self)
            return bool(dialog.exec()) and self.submit_review(specimen_id, "annotate", note=dialog.note_text())
        if not self.submit_review(specimen_id, "accept"):
            return False
        self.select_next_to_review(after=specimen_id)
        return True

    def _library_taxonomy(self):
        """(the library's names per rank, or None; why not), read once per library path."""
        path = self.settings.library_path
        cached = getattr(self, "_taxonomy_cache", None)
        if cached is None or cached[0] != path:
            try:
                cached = (path, jobs.library_taxonomy(self.settings), "")
            except BioscanError as exc:
                cached = (path, None, str(exc))
            self._taxonomy_cache = cached
        return cached[1], cached[2]

    def submit_review(self, specimen_id: int, action: str, taxonomy: dict | None = None, note: str = "",
                      unverified_names: dict | None = None) -> bool:
        try:
            self.project.annotate(specimen_id, action, user=self.settings.user_name, taxonomy=taxonomy, note=note,
                                  unverified_names=unverified_names)
        except (BioscanError, ValueError) as exc:
            self._error("The review was not saved", str(exc))
            return False
        self.results_model.refresh()  # the row may leave a filtered view: the view moves the detail with it
        if self.detail_view.specimen_id == specimen_id:
            self.show_specimen(specimen_id, load_photo=False)
        self._update_counts()
        self.reload_tree()
        self.statusBar().showMessage({"accept": "Call accepted", "override": "Override saved",
                                      "annotate": "Note saved"}[action], 5000)
        self.reviewSaved.emit(specimen_id, action)
        return True

    def select_next_to_review(self, after: int | None = None) -> bool:
        """Make current the next row (in the table's order) whose call nobody reviewed yet."""
        view, model = self.results_view, self.results_model
        row = view.current_row
        if row is None:
            start = 0
        elif after is not None and view.current_specimen_id != after:
            start = row  # the reviewed row left the view: the one that took its place is next
        else:
            start = row + 1
        found = presenters.next_row_to_review(model.row, start, model.count)
        if found is None:
            self.statusBar().showMessage("No more specimens to review below this one in the table", 8000)
            return False
        view.select_row(found)
        view.table.setFocus()
        return True

    def _ensure_user_name(self) -> bool:
        if self.settings.user_name.strip():
            return True
        name, ok = QInputDialog.getText(self, "Your name", "Reviews are saved with your name. Your name:")
        if ok and name.strip():
            self.settings.user_name = name.strip()
            self._save_settings()
            return True
        return False

    # ------------------------------------------------------------------------------------ cluster map
    def compute_cluster_map(self) -> None:
        if self.project is None or self.cluster_task is not None:
            return
        task = workers.Task(workers.in_subprocess, jobs.compute_cluster_map, self.project_path)
        task.signals.progress.connect(self.cluster_view.set_progress)
        task.signals.finished.connect(lambda result, task=task: self._cluster_map_done(task, result))
        task.signals.failed.connect(
            lambda msg, task=task: self._cluster_map_stopped(task, f"The map could not be computed: {msg}"))
        task.signals.cancelled.connect(lambda task=task: self._cluster_map_stopped(task, "Cancelled."))
        self.cluster_task = task
        self.cluster_view.set_busy(True, "Starting…")
        self.tabs.setCurrentWidget(self.cluster_view)
        workers.start(task, "heavy")

    def _show_cached_cluster_map(self) -> None:
        """The project's putative species as cached in it (instant on reopen; nothing is computed)."""
        task = workers.Task(jobs.compute_cluster_map, self.project_path, cached_only=True)
        path = self.project_path
        task.signals.finished.connect(
            lambda species_map, path=path: self._cached_cluster_map_read(path, species_map))
        workers.start(task, "light")

    def _cached_cluster_map_read(self, path: str, species_map) -> None:
        if species_map is not None and path == self.project_path and self.cluster_task is None:
            self.cluster_view.set_map(species_map)
            self.clusterMapReady.emit()

    def _cluster_map_done(self, task: workers.Task, cluster_map) -> None:
        if task is not self.cluster_task:
            return  # computed for a project closed since
        self.cluster_task = None
        self.cluster_view.set_busy(False)
        if cluster_map is None:
            self.cluster_view.set_message("At least 3 identified barcodes are needed for a cluster map.")
        else:
            self.cluster_view.set_map(cluster_map)
        self.clusterMapReady.emit()

    def _cluster_map_stopped(self, task: workers.Task, message: str) -> None:
        if task is not self.cluster_task:
            return
        self.cluster_task = None
        self.cluster_view.set_busy(False, message)
        self.clusterMapReady.emit()

    # ------------------------------------------------------------------------------------ learn photos
    def choose_learn_photos(self) -> None:
        """Ask for the confidence and the library, then learn the barcoded specimens' photos."""
        from engine import BARCODED_MIN_CONFIDENCE

        from bioscan_desktop.views.learn_photos_dialog import LearnPhotosDialog

        if self.project is None or self.learn_task is not None:
            return
        base = Path(self.settings.library_path).name if self.settings.library_path else "the bundled library"
        default = self.settings.library_path or str(Path(self.project_path).parent / "lab-library.db")
        dialog = LearnPhotosDialog(default, base, BARCODED_MIN_CONFIDENCE, self)
        if dialog.exec():
            self.learn_photos(*dialog.choice())

    def learn_photos(self, library: str, min_confidence: float) -> None:
        """engine.learn_barcoded_photos in the background, with a progress dialog whose Cancel stops
        it (the library is then left as it was)."""
        self.learn_task = workers.Task(jobs.learn_photos, self.project_path, library, self.settings, min_confidence)
        self._update_actions()
        self.learn_progress = self._run_with_progress(
            self.learn_task, "Learn photos from barcoded specimens", "Learning photos from barcoded specimens…",
            self._photos_learned, self._learn_stopped, "Learning photos failed",
            "Learning photos cancelled: the library was not changed")

    def _run_with_progress(self, task: workers.Task, title: str, label: str, finished, stopped, failed: str,
                           cancelled: str) -> QProgressDialog:
        """Start a background job under a window-modal progress dialog whose Cancel cancels it;
        ``finished(task, result)`` or ``stopped(task, message, error)`` is called when it ends."""
        progress = QProgressDialog(label, "Cancel", 0, 0, self)
        progress.setWindowTitle(title)
        progress.setWindowModality(Qt.WindowModality.WindowModal)
        progress.setMinimumDuration(0)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.canceled.connect(task.cancel)
        task.signals.progress.connect(lambda done, total, message: self._show_job_progress(progress, done, total,
                                                                                           message))
        task.signals.finished.connect(lambda result: finished(task, result))
        task.signals.failed.connect(lambda msg: stopped(task, f"{failed}: {msg}", True))
        task.signals.cancelled.connect(lambda: stopped(task, cancelled))
        progress.show()
        self.statusBar().showMessage(label)
        workers.start(task, "heavy")
        return progress

    @staticmethod
    def _show_job_progress(progress: QProgressDialog, done: int, total: int, message: str) -> None:
        from shiboken6 import isValid

        if isValid(progress) and progress.isVisible() and not progress.wasCanceled():
            progress.setMaximum(max(total, 0))
            progress.setValue(min(done, total))
            progress.setLabelText(message[:1].upper() + message[1:] + "…")

    def _end_learning(self, task: workers.Task) -> bool:
        if task is not self.learn_task:
            return False
        self.learn_task = None
        if self.learn_progress is not None:
            self.learn_progress.close()
            self.learn_progress.deleteLater()
            self.learn_progress = None
        self._update_actions()
        return True

    def _photos_learned(self, task: workers.Task, result) -> None:
        if not self._end_learning(task):
            return
        message = f"{result.summary()} ({Path(result.library).name})"
        self.last_learn_message = message
        self.statusBar().showMessage(message, 30000)
        self.photosLearned.emit(result)
        if not self.quiet_errors:
            # after this slot returns: the progress dialog is gone and the box is the active window
            QTimer.singleShot(0, lambda: self.offer_rematch(result, message))

    def offer_rematch(self, result, message: str) -> None:
        """What learning did, and the next step: re-match the photos against the library (using it
        from now on if it is not the library in use)."""
        skipped = "".join(f"<br>{html.escape(rid)}: {html.escape(why)}" for rid, why in result.skipped[:5])
        in_use = bool(self.settings.library_path) and (
            Path(self.settings.library_path).resolve() == Path(result.library).resolve())
        box = QMessageBox(QMessageBox.Icon.Information, "Learn photos from barcoded specimens",
                          html.escape(message) + (f"<br><br>Skipped:{skipped}" if skipped else ""),
                          QMessageBox.StandardButton.Close, self)
        if in_use:
            box.setInformativeText("Re-match the photos of specimens without a barcode call against it now?")
            rematch = box.addButton("Re-match photos", QMessageBox.ButtonRole.AcceptRole)
        else:
            box.setInformativeText("Use it as the reference library from now on (Settings, Reference library) "
                                   "and re-match the photos of specimens without a barcode call against it?")
            rematch = box.addButton("Use it and re-match photos", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(rematch)
        box.exec()
        if box.clickedButton() is not rematch or self.project is None:
            return
        if not in_use:
            self.apply_settings(replace(self.settings, library_path=result.library))
        self.rematch_photos(all_photos=False)

    def _learn_stopped(self, task: workers.Task, message: str, error: bool = False) -> None:
        if not self._end_learning(task):
            return
        self.last_learn_message = message
        if error:
            self._error("Learn photos", message)
        else:
            self.statusBar().showMessage(message, 15000)
        self.photosLearned.emit(None)

    # ------------------------------------------------------------------------------------ re-match photos
    def choose_rematch_photos(self) -> None:
        """Say how many photos would be matched again, and against which library; then do it."""
        if self.project is None or self.rematch_task is not None:
            return
        photo_only, every = jobs.photos_to_rematch(self.project)
        library = Path(self.settings.library_path).name if self.settings.library_path else "the bundled library"
        if not every:
            self._error("Re-match photos", "This project has no photos that were read at import.")
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Re-match photos against the library",
                          f"Match photos again against {html.escape(library)}, with the image model in Settings.",
                          QMessageBox.StandardButton.Cancel, self)
        box.setInformativeText(f"{photo_only:,} of the {every:,} photos belong to specimens without a barcode "
                               "call. Reviews are kept; a reviewed specimen whose call changes is marked for "
                               "review again.")
        everything = QCheckBox(f"All {every:,} photos, also of specimens with a barcode call")
        everything.setChecked(not photo_only)
        box.setCheckBox(everything)
        start = box.addButton("Re-match", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(start)
        box.exec()
        if box.clickedButton() is start:
            self.rematch_photos(all_photos=everything.isChecked())

    def rematch_photos(self, all_photos: bool = False) -> None:
        """engine.rematch_photos in the background against the library in Settings, with a progress
        dialog whose Cancel stops it after the current batch (the batches done are kept)."""
        if self.project is None or self.rematch_task is not None or self.import_task is not None:
            return
        self.rematch_task = workers.Task(jobs.rematch_photos, self.project_path, self.settings, all_photos)
        self._update_actions()
        self.rematch_progress = self._run_with_progress(
            self.rematch_task, "Re-match photos", "Re-matching photos…", self._photos_rematched,
            self._rematch_stopped, "Re-matching photos failed",
            "Re-matching photos cancelled: the photos re-matched so far are kept")

    def _end_rematch(self, task: workers.Task) -> bool:
        if task is not self.rematch_task:
            return False
        self.rematch_task = None
        if self.rematch_progress is not None:
            self.rematch_progress.close()
            self.rematch_progress.deleteLater()
            self.rematch_progress = None
        self.refresh_all()  # calls and statuses changed, and the tree's counts
        self._show_import_state()
        self._update_actions()
        return True

    def _photos_rematched(self, task: workers.Task, result) -> None:
        if not self._end_rematch(task):
            return
        message = result.summary()
        self.last_rematch_message = message
        self.statusBar().showMessage(message, 30000)
        self.photosRematched.emit(result)
        if result.errors and not self.quiet_errors:
            errors = "".join(f"<br>{html.escape(k)}: {html.escape(why)}" for k, why in result.errors[:5])
            QTimer.singleShot(0, lambda: QMessageBox.information(self, "Re-match photos",
                                                                 f"{html.escape(message)}<br><br>Errors:{errors}"))

    def _rematch_stopped(self, task: workers.Task, message: str, error: bool = False) -> None:
        if not self._end_rematch(task):
            return
        self.last_rematch_message = message
        if error:
            self._error("Re-match photos", message)
        else:
            self.statusBar().showMessage(message, 15000)
        self.photosRematched.emit(None)

    # ------------------------------------------------------------------------------------ export
    EXPORTS = {  # kind: (dialog title, file filter, default suffix, job)
        "csv": ("Export results as CSV", "CSV (*.csv)", ".csv", jobs.export_csv),
        "dwca": ("Export a Darwin Core Archive", "Darwin Core Archive (*.zip)", ".dwca.zip", jobs.export_dwca),
        "report": ("Export a report", "PDF (*.pdf);;HTML (*.html)", ".report.pdf", jobs.export_report),
    }

    def choose_export(self, kind: str = "csv") -> None:
        if self.project is None:
            return
        title, file_filter, suffix, _ = self.EXPORTS[kind]
        default = Path(self.project_path).parent / (Path(self.project_path).name.split(".")[0] + suffix)
        path, _ = QFileDialog.getSaveFileName(self, title, str(default), file_filter)
        if path:
            self.export(kind, path)

    def export(self, kind: str, path: str) -> None:
        """Run an engine export in the background; the CSV follows the table's filters."""
        job = self.EXPORTS[kind][3]
        args = (self.results_view.current_filter(), path) if kind == "csv" else (path,)
        task = workers.Task(job, self.project_path, *args)
        task.signals.finished.connect(lambda n: self._exported(path, n))
        task.signals.failed.connect(lambda msg: self._error("Export failed", msg))
        self.statusBar().showMessage(f"Exporting to {path}…")
        workers.start(task, "light")

    def _exported(self, path: str, n) -> None:
        what = f"{n:,} specimens" if isinstance(n, int) else "the report"
        self.statusBar().showMessage(f"Exported {what} to {path}", 10000)
        self.exportFinished.emit(path)

    # ------------------------------------------------------------------------------------ settings, about
    def _load_setup_info(self) -> None:
        task = workers.Task(jobs.describe_setup, self.settings, with_progress=False)
        task.signals.finished.connect(self._setup_info_loaded)
        workers.start(task, "light")

    def _setup_info_loaded(self, info) -> None:
        self.setup_info = info
        self.device_label.setText(f"Device: {info.device}")
        self.model_label.setText(f"DNA model: {info.dna_model}")
        self.library_label.setText(f"Library: {info.library}")
        tip = "\n".join(info.problems) or None
        for w in (self.model_label, self.library_label):
            w.setToolTip(tip or "")
            w.setStyleSheet("padding: 0 6px;" + (" color: #c62828;" if info.problems else ""))

    def open_settings(self) -> None:
        from bioscan_desktop.views.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._save_settings()
        self._load_setup_info()

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.statusBar().showMessage(f"Settings not saved: {exc}", 8000)

    def show_about(self) -> None:
        from engine import __version__ as engine_version

        from bioscan_desktop import __version__
        from bioscan_desktop.views.about_dialog import AboutDialog, about_html

        AboutDialog(about_html(__version__, engine_version, self.setup_info), self).exec()

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(what)}</td><td><b>{html.escape(self._native(keys))}</b></td></tr>"
                       for what, keys in shortcut_rows())
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", f"<table cellpadding='3'>{rows}</table>",
                          QMessageBox.StandardButton.Close, self)
        box.setEscapeButton(QMessageBox.StandardButton.Close)
        box.setDefaultButton(QMessageBox.StandardButton.Close)
        box.exec()

    @staticmethod
    def _native(keys: str) -> str:
        """A shortcut as this platform writes it (Cmd on macOS); other key descriptions as they are."""
        seq = QKeySequence(keys)
        native = seq.toString(QKeySequence.SequenceFormat.NativeText)
        return native if native and seq.toString() == keys else keys

    def _error(self, title: str, message: str) -> None:
        log.warning("%s: %s", title, message)
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        if not self.quiet_errors:
            QMessageBox.warning(self, title, message)

    # ------------------------------------------------------------------------------------ quit
    def closeEvent(self, event) -> None:
        if self.import_task is not None:
            answer = QMessageBox.question(
                self, "Stop the import?",
                "An import is running. Stop it now? Everything imported so far is kept, and Resume continues later.")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        workers.shutdown()
        if self.project is not None:
            self.project.close()
            self.project = None
        self._remember_columns()
        self._save_settings()
        super().closeEvent(event)
