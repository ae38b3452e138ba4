"""The results table with its filter bar: search, status, confidence, and the taxon/map selection in force."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QByteArray, QItemSelectionModel, QModelIndex, QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMenu, QPushButton, QSizePolicy,
    QStackedWidget, QTableView, QVBoxLayout, QWidget,
)

from bioscan_desktop.filters import TableFilter
from bioscan_desktop.models.results_table import COLUMNS, KEY_COLUMN, PHOTO_COLUMN, ResultsTableModel

STATUS_CHOICES = (
    ("All statuses", None),
    ("Identified", "ok"),
    ("Novel", "novel"),
    ("Errors", "error"),
    ("Pending (photos only)", "pending"),
)
CONFIDENCE_CHOICES = (
    ("Any confidence", None, None),
    ("High (≥ 90%)", 0.9, None),
    ("Medium or better (≥ 70%)", 0.7, None),
    ("Needs review (< 70%)", None, 0.7),
)
REVIEW_CHOICES = (
    ("Reviewed or not", None),
    ("Not reviewed", ""),
    ("Accepted", "accepted"),
    ("Overridden", "overridden"),
    ("Call changed since accepted", "stale"),
)
COLUMN_WIDTHS = {"Photo": 46, "Specimen": 118, "Status": 112, "Order": 96, "Family": 110, "Genus": 104,
                 "Species": 170, "BIN": 104, "Confidence": 76, "Identity": 64, "Embedding similarity": 72,
                 "Novel": 64, "QC flags": 130, "Review": 90, "Data": 76}
ROW_HEIGHT = 42
THUMB_SIZE = ROW_HEIGHT - 6


class SpecimenTable(QTableView):
    """Rows are specimens: Home/End go to the first/last specimen (Qt's default is the first/last column)."""

    def moveCursor(self, action, modifiers):
        if action == QAbstractItemView.CursorAction.MoveHome:
            return self.model().index(0, max(self.currentIndex().column(), 0))
        if action == QAbstractItemView.CursorAction.MoveEnd:
            return self.model().index(self.model().rowCount() - 1, max(self.currentIndex().column(), 0))
        return super().moveCursor(action, modifiers)


class ResultsView(QWidget):
    specimenSelected = Signal(int)  # the current row's specimen id (also when a refresh moved the row under it)
    selectionCleared = Signal()  # no current row any more (the table emptied under it)
    filterCleared = Signal()  # the taxon / map selection chip was cleared
    rowMenuRequested = Signal(QPoint)  # right-click on a row (made current first), global position
    columnsChanged = Signal()  # shown/hidden columns changed (to remember the layout)

    def __init__(self, model: ResultsTableModel, empty_page: QWidget, parent=None):
        super().__init__(parent)
        self.model = model
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search specimen, processid, sample id, species or genus  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.status = QComboBox()
        for label, value in STATUS_CHOICES:
            self.status.addItem(label, value)
        self.confidence = QComboBox()
        for label, lo, hi in CONFIDENCE_CHOICES:
            self.confidence.addItem(label, (lo, hi))
        self.review = QComboBox()
        for label, value in REVIEW_CHOICES:
            self.review.addItem(label, value)
        self.chip = QLabel("")
        self.chip.setStyleSheet("background: #e3f2fd; border-radius: 8px; padding: 2px 8px;")
        self.chip_clear = QPushButton("Show all")
        self.chip_clear.setToolTip("Clear the taxon or map selection")
        self.count = QLabel("")

        self.table = SpecimenTable()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(KEY_COLUMN, Qt.SortOrder.AscendingOrder)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._row_menu)
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform rows: 100,000 rows scroll smoothly
        vh.setDefaultSectionSize(ROW_HEIGHT)
        vh.hide()
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setSectionsMovable(True)
        hh.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        hh.customContextMenuRequested.connect(self._header_menu)
        self._default_header = self._set_default_widths()

        self.stack = QStackedWidget()
        self.stack.addWidget(empty_page)
        self.stack.addWidget(self.table)

        for combo in (self.status, self.confidence, self.review):
            # shrinkable (the window must fit 1280-px screens), full width when there is room
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(11)
            combo.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.search.setMinimumWidth(200)
        bar = QHBoxLayout()
        bar.addWidget(self.search, 1)
        bar.addWidget(self.status)
        bar.addWidget(self.confidence)
        bar.addWidget(self.review)
        chips = QHBoxLayout()
        chips.addWidget(self.chip)
        chips.addWidget(self.chip_clear)
        chips.addStretch()
        chips.addWidget(self.count)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addLayout(chips)
        layout.addWidget(self.stack, 1)

        self._search_timer = QTimer(self, singleShot=True, interval=250)  # one query per pause in typing
        self._search_timer.timeout.connect(self._apply)
        self.search.textChanged.connect(self._search_timer.start)
        self.search.returnPressed.connect(self._search_done)
        self.status.currentIndexChanged.connect(self._apply)
        self.confidence.currentIndexChanged.connect(self._apply)
        self.review.currentIndexChanged.connect(self._apply)
        self.chip_clear.clicked.connect(self.clear_scope)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        model.countChanged.connect(self._count_changed)
        model.modelReset.connect(self._after_reset)
        self._scope = TableFilter()  # taxon / ids from the tree or the map
        self._selected_id: int | None = None
        self._selected_row = 0
        self._filter_changed = False
        self._update_chip()

    # -- filter --------------------------------------------------------------------------------
    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _search_done(self) -> None:
        """Enter in the search box: apply now and go to the results (arrow keys then move by specimen)."""
        self._search_timer.stop()
        self._apply()
        if self.model.count:
            self.table.setFocus()

    def current_filter(self) -> TableFilter:
        lo, hi = self.confidence.currentData()
        return replace(self._scope, search=self.search.text().strip(), status=self.status.currentData(),
                       min_confidence=lo, max_confidence=hi, review=self.review.currentData())

    def _apply(self) -> None:
        self._filter_changed = True
        self.model.set_filter(self.current_filter())
        self._update_chip()

    def set_taxon(self, taxon: dict[str, str]) -> None:
        self._scope = TableFilter(taxon=dict(taxon))
        self._apply()

    def set_ids(self, ids: list[int], label: str) -> None:
        self._scope = TableFilter(ids=list(ids), ids_label=label)
        self._apply()

    def clear_scope(self) -> None:
        self._scope = TableFilter()
        self._apply()
        self.filterCleared.emit()

    def _reset_widgets(self) -> None:
        """Search box and filter menus back to 'everything', without a query per widget."""
        self._search_timer.stop()
        widgets = (self.search, self.status, self.confidence, self.review)
        for w in widgets:
            w.blockSignals(True)
        self.search.clear()
        for combo in widgets[1:]:
            combo.setCurrentIndex(0)
        for w in widgets:
            w.blockSignals(False)

    def reset(self) -> None:
        """Back to everything, nothing selected: a new project (its ids and names mean nothing here)."""
        self._reset_widgets()
        self._scope = TableFilter()
        self._selected_id, self._selected_row = None, 0
        self.table.selectionModel().clearCurrentIndex()
        self.table.clearSelection()
        self.model.filter = self.current_filter()  # the window gives the model its next project
        self._update_chip()

    def clear_filters(self) -> None:
        """Search, filters and the taxon/map selection back to 'everything' (one refresh)."""
        self._reset_widgets()
        self.clear_scope()

    def _update_chip(self) -> None:
        text = self._scope.describe()
        self.chip.setText(f"Showing: {text}")
        self.chip.setVisible(bool(text))
        self.chip_clear.setVisible(bool(text))

    def _count_changed(self, n: int) -> None:
        total = self.model.project.count_specimens() if self.model.project is not None else 0
        self.count.setText(f"{n:,} of {total:,} specimens" if n != total else f"{n:,} specimens")
        self.stack.setCurrentIndex(1 if total else 0)

    # -- selection -----------------------------------------------------------------------------
    @property
    def current_specimen_id(self) -> int | None:
        return self._selected_id

    @property
    def current_row(self) -> int | None:
        return self._selected_row if self._selected_id is not None else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        sid = self.model.data(current, ResultsTableModel.SpecimenIdRole) if current.isValid() else None
        if sid is None:
            return
        selection = self.table.selectionModel()
        if not selection.isRowSelected(current.row()):  # e.g. Qt making the first row current on focus-in
            selection.select(current, QItemSelectionModel.SelectionFlag.ClearAndSelect
                             | QItemSelectionModel.SelectionFlag.Rows)  # the detail shows the row highlighted
        self._selected_row = current.row()
        if sid != self._selected_id:
            self._selected_id = sid
            self.specimenSelected.emit(sid)

    def _after_reset(self) -> None:
        """Keep the highlight and the specimen together across a refresh.

        The same specimen stays current if the filter still shows it (wherever the sort put it).
        If it is gone (a review took it out of a filtered view), the row that took its place
        becomes current, and the detail is told, so actions never apply to a row not highlighted;
        after a filter change, the first row does.
        """
        filter_changed, self._filter_changed = self._filter_changed, False
        sid, old_row = self._selected_id, self._selected_row
        if sid is None:
            return
        if not self.model.count:
            self._selected_id = None
            self.selectionCleared.emit()
            return
        row = self.model.find_row(sid, near=old_row)
        if row is None:
            row = 0 if filter_changed else min(old_row, self.model.count - 1)
        self.select_row(row)

    def select_row(self, row: int) -> None:
        """Make a row current (its specimen goes to the detail) and show it."""
        if not 0 <= row < self.model.count:
            return
        column = max(self.table.currentIndex().column(), KEY_COLUMN)
        index = self.model.index(row, column)
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(index)

    def select_specimen(self, specimen_id: int) -> bool:
        """Make a specimen's row current if the table shows it; else leave no row current."""
        row = self.model.find_row(specimen_id, near=self._selected_row)
        if row is None:
            self._selected_id = None
            self.table.selectionModel().clearCurrentIndex()
            self.table.clearSelection()
            return False
        self._selected_id = specimen_id  # the caller shows it already
        self.select_row(row)
        return True

    def select_first(self) -> None:
        if self.model.count:
            self.select_row(0)
            self.table.setFocus()

    def _row_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.select_row(index.row())  # the menu's actions apply to the row clicked
        self.rowMenuRequested.emit(self.table.viewport().mapToGlobal(pos))

    # -- columns -----------------------------------------------------------------------------------
    def _set_default_widths(self) -> QByteArray:
        hh = self.table.horizontalHeader()
        for i, col in enumerate(COLUMNS):
            self.table.setColumnWidth(i, COLUMN_WIDTHS.get(col.header, 100))
        hh.setSectionResizeMode(PHOTO_COLUMN, QHeaderView.ResizeMode.Fixed)
        return hh.saveState()

    def column_visibility(self) -> dict[str, bool]:
        return {c.header: not self.table.isColumnHidden(i) for i, c in enumerate(COLUMNS)}

    def set_column_visible(self, header: str, visible: bool) -> None:
        i = next(i for i, c in enumerate(COLUMNS) if c.header == header)
        if i != KEY_COLUMN and self.table.isColumnHidden(i) == visible:
            self.table.setColumnHidden(i, not visible)
            if visible and self.table.columnWidth(i) < 20:
                self.table.setColumnWidth(i, COLUMN_WIDTHS.get(header, 100))
            self.columnsChanged.emit()

    def reset_columns(self) -> None:
        self.table.horizontalHeader().restoreState(self._default_header)
        self.columnsChanged.emit()

    def header_state(self) -> bytes:
        return bytes(self.table.horizontalHeader().saveState().data())

    def restore_header(self, state: bytes) -> bool:
        """Column order, widths and hidden columns saved by ``header_state`` (False if they no longer fit)."""
        hh = self.table.horizontalHeader()
        if not state or not hh.restoreState(QByteArray(state)):
            return False
        if hh.count() != len(COLUMNS) or self.table.isColumnHidden(KEY_COLUMN):
            hh.restoreState(self._default_header)
            return False
        return True

    def column_menu(self, parent=None) -> QMenu:
        """Checkable columns (the header's right-click menu), and 'Reset columns'."""
        menu = QMenu("Columns", parent or self)
        for header, visible in self.column_visibility().items():
            act = menu.addAction(header or "Photo")
            act.setCheckable(True)
            act.setChecked(visible)
            act.setEnabled(header != COLUMNS[KEY_COLUMN].header)
            act.toggled.connect(lambda on, h=header: self.set_column_visible(h, on))
        menu.addSeparator()
        menu.addAction("Reset columns", self.reset_columns)
        return menu

    def _header_menu(self, pos: QPoint) -> None:
        menu = self.column_menu(self)
        menu.popup(self.table.horizontalHeader().mapToGlobal(pos))
