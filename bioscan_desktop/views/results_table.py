"""The results table with its filter bar: search, status, confidence, and the taxon/map selection in force."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QSizePolicy, QStackedWidget,
    QTableView, QVBoxLayout, QWidget,
)

from bioscan_desktop.filters import TableFilter
from bioscan_desktop.models.results_table import COLUMNS, PHOTO_COLUMN, ResultsTableModel

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
                 "Species": 170, "BIN": 104, "Confidence": 76, "Top match": 72, "Novel": 64, "QC flags": 130,
                 "Review": 90, "Data": 76}
ROW_HEIGHT = 42
THUMB_SIZE = ROW_HEIGHT - 6


class ResultsView(QWidget):
    specimenSelected = Signal(int)  # the current row's specimen id
    filterCleared = Signal()  # the taxon / map selection chip was cleared
    emptyImportRequested = Signal()
    emptyOpenRequested = Signal()

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

        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform rows: 100,000 rows scroll smoothly
        vh.setDefaultSectionSize(ROW_HEIGHT)
        vh.hide()
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for i, col in enumerate(COLUMNS):
            self.table.setColumnWidth(i, COLUMN_WIDTHS.get(col.header, 100))
        hh.setSectionResizeMode(PHOTO_COLUMN, QHeaderView.ResizeMode.Fixed)

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
        self.status.currentIndexChanged.connect(self._apply)
        self.confidence.currentIndexChanged.connect(self._apply)
        self.review.currentIndexChanged.connect(self._apply)
        self.chip_clear.clicked.connect(self.clear_scope)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        model.countChanged.connect(self._count_changed)
        model.modelReset.connect(self._reselect)
        QShortcut(QKeySequence.StandardKey.Find, self, activated=self.focus_search)
        self._scope = TableFilter()  # taxon / ids from the tree or the map
        self._selected_id: int | None = None
        self._update_chip()

    # -- filter --------------------------------------------------------------------------------
    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def current_filter(self) -> TableFilter:
        lo, hi = self.confidence.currentData()
        return replace(self._scope, search=self.search.text().strip(), status=self.status.currentData(),
                       min_confidence=lo, max_confidence=hi, review=self.review.currentData())

    def _apply(self) -> None:
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
    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        sid = self.model.data(current, ResultsTableModel.SpecimenIdRole) if current.isValid() else None
        if sid is not None and sid != self._selected_id:
            self._selected_id = sid
            self.specimenSelected.emit(sid)

    def _reselect(self) -> None:
        """Keep the selected specimen selected across refreshes when it is on a cached page."""
        if self._selected_id is None or self.model.count == 0:
            return
        if self.model.row(0) is not None:  # loads the first page
            row = self.model.row_of(self._selected_id)
            if row is not None:
                self.table.selectionModel().blockSignals(True)
                self.table.selectRow(row)
                self.table.selectionModel().blockSignals(False)

    def select_first(self) -> None:
        if self.model.count:
            self.table.selectRow(0)
            self.table.setFocus()
