"""ResultsTableModel: one row per specimen, fetched from the project in pages, sorted and filtered in SQL.

Only the pages the view asks for are read (a page of 200 rows takes milliseconds even in a
100,000-specimen project), and the few most recently used pages are kept.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor

from bioscan_desktop.filters import TableFilter
from bioscan_desktop.presenters import (
    REVIEW_LABELS, STATUS_HELP, confidence_text, finest_name, number_text, status_text,
)

PAGE_SIZE = 200
MAX_PAGES = 25

SpecimenId = int


@dataclass(frozen=True)
class Column:
    key: str  # SPECIMEN_LIST_COLUMNS name used for sorting ("" = not sortable)
    header: str
    tip: str
    text: Callable[[dict[str, Any]], str]


def _rank(rank: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: r.get(f"final_{rank}") or ""


COLUMNS = (
    Column("", "Photo", "first photo of the specimen", lambda r: ""),
    Column("specimen_key", "Specimen", "specimen key (processid, sampleid or file name)", lambda r: r["specimen_key"]),
    Column("status", "Status", "identified, novel, error or pending",
           lambda r: status_text(r["status"], r.get("novel_rank") or "")),
    Column("confidence", "Confidence", "confidence of the finest called rank", 
           lambda r: confidence_text(r["confidence"]) if finest_name(r)[0] else ""),
    Column("final_order", "Order", "called order (your override if any)", _rank("order")),
    Column("final_family", "Family", "called family", _rank("family")),
    Column("final_genus", "Genus", "called genus", _rank("genus")),
    Column("final_species", "Species", "called species", _rank("species")),
    Column("final_bin_uri", "BIN", "called BOLD Barcode Index Number", _rank("bin_uri")),
    Column("top_similarity", "Top match", "similarity of the best reference match (1 = identical embedding)",
           lambda r: number_text(r["top_similarity"])),
    Column("novel", "Novel", "no close reference in the library at this rank",
           lambda r: (r.get("novel_rank") or "yes") if r.get("novel") else ""),
    Column("qc_flags", "QC flags", "barcode quality-control flags", lambda r: (r.get("qc_flags") or "").replace(";", ", ")),
    Column("review", "Review", "your review of the call", lambda r: REVIEW_LABELS.get(r.get("review") or "", "")),
    Column("modalities", "Data", "barcode (dna) and/or photo", lambda r: r.get("modalities") or ""),
)
PHOTO_COLUMN = 0
STATUS_COLORS = {"ok": "#2e7d32", "novel": "#6a1b9a", "error": "#c62828", "pending": "#8d6e00"}


class ResultsTableModel(QAbstractTableModel):
    """Rows of ``project.list_specimens`` under a TableFilter and a sort column."""

    countChanged = Signal(int)
    SpecimenIdRole = Qt.ItemDataRole.UserRole + 1
    RowRole = Qt.ItemDataRole.UserRole + 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project = None
        self.filter = TableFilter()
        self.sort_key = "id"
        self.descending = False
        self._count = 0
        self._pages: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.thumbnails = None  # a ThumbnailCache, set by the view

    # -- inputs ---------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.refresh()

    def set_filter(self, flt: TableFilter) -> None:
        self.filter = flt
        self.refresh()

    def refresh(self) -> None:
        """Re-read the row count and drop cached pages (after an import batch, a review, a filter change)."""
        self.beginResetModel()
        self._pages.clear()
        self._count = self.project.count_specimens(self.filter) if self.project is not None else 0
        self.endResetModel()
        self.countChanged.emit(self._count)

    def reload_rows(self) -> None:
        """Fresh data for the rows already shown, keeping the selection (e.g. after a review)."""
        self._pages.clear()
        if self._count:
            self.dataChanged.emit(self.index(0, 0), self.index(self._count - 1, len(COLUMNS) - 1))

    @property
    def count(self) -> int:
        return self._count

    # -- paging ---------------------------------------------------------------------------
    def row(self, row: int) -> dict[str, Any] | None:
        if self.project is None or not 0 <= row < self._count:
            return None
        page_no = row // PAGE_SIZE
        page = self._pages.get(page_no)
        if page is None:
            page = self.project.list_specimens(self.filter, sort=self.sort_key, descending=self.descending,
                                               offset=page_no * PAGE_SIZE, limit=PAGE_SIZE)
            self._pages[page_no] = page
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        offset = row - page_no * PAGE_SIZE
        return page[offset] if offset < len(page) else None

    def row_of(self, specimen_id: SpecimenId) -> int | None:
        """The row of a specimen if it is in a cached page (the view only needs visible ones)."""
        for page_no, page in self._pages.items():
            for i, r in enumerate(page):
                if r["id"] == specimen_id:
                    return page_no * PAGE_SIZE + i
        return None

    # -- Qt model API ---------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].header
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tip
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.row(index.row())
        if r is None:
            return None
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.text(r)
        if role == self.SpecimenIdRole:
            return r["id"]
        if role == self.RowRole:
            return r
        if role == Qt.ItemDataRole.DecorationRole and index.column() == PHOTO_COLUMN:
            if r.get("n_photos") and self.thumbnails is not None:
                return self.thumbnails.get(r["id"])
            return None
        if role == Qt.ItemDataRole.ForegroundRole and col.key == "status":
            return QBrush(QColor(STATUS_COLORS.get(r["status"], "#000000")))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col.key == "status":
                return r.get("error") or STATUS_HELP.get(r["status"], "")
            if col.key.startswith("final_") and r.get("review") == "overridden":
                machine = r.get(col.key.removeprefix("final_")) or "(not called)"
                return f"your override; the machine called {machine}"
            return col.text(r) or None
        if role == Qt.ItemDataRole.TextAlignmentRole and col.key in ("confidence", "top_similarity"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        key = COLUMNS[column].key
        if not key:
            return
        self.sort_key, self.descending = key, order == Qt.SortOrder.DescendingOrder
        self.refresh()

    def thumbnail_ready(self, specimen_id: SpecimenId) -> None:
        row = self.row_of(specimen_id)
        if row is not None:
            idx = self.index(row, PHOTO_COLUMN)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])
