"""ResultsTableModel: one row per specimen, fetched from the project in pages, sorted and filtered in SQL.

Only the pages the view asks for are read (a page of 200 rows takes milliseconds even in a
100,000-specimen project), and the few most recently used pages are kept.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor

from bioscan_desktop.filters import TableFilter
from bioscan_desktop.presenters import (
    IDENTITY_TIP, RANK_LABELS, REVIEW_LABELS, SIMILARITY_TIP, STATUS_COLORS, STATUS_HELP, confidence_text,
    identity_text, shown_call, similarity_text, status_text,
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
    Column("confidence", "Confidence", "machine confidence of the finest rank named (species, genus, ...; "
           "the BIN's is in its tooltip)", lambda r: confidence_text(shown_call(r)[2])),
    Column("final_order", "Order", "called order (your override if any)", _rank("order")),
    Column("final_family", "Family", "called family", _rank("family")),
    Column("final_genus", "Genus", "called genus", _rank("genus")),
    Column("final_species", "Species", "called species", _rank("species")),
    Column("final_bin_uri", "BIN", "called BOLD Barcode Index Number", _rank("bin_uri")),
    Column("identity", "Identity", f"top match: {IDENTITY_TIP}", lambda r: identity_text(r.get("identity"))),
    Column("top_similarity", "Embedding similarity", f"top match: {SIMILARITY_TIP}",
           lambda r: similarity_text(r.get("top_similarity"))),
    Column("novel", "Novel", "no close reference in the library at this rank",
           lambda r: (r.get("novel_rank") or "yes") if r.get("novel") else ""),
    Column("qc_flags", "QC flags", "barcode quality-control flags", lambda r: (r.get("qc_flags") or "").replace(";", ", ")),
    Column("review", "Review", "your review of the call", lambda r: REVIEW_LABELS.get(r.get("review") or "", "")),
    Column("modalities", "Data", "barcode (dna) and/or photo", lambda r: r.get("modalities") or ""),
)
PHOTO_COLUMN = 0
KEY_COLUMN = 1  # the specimen id: never hidden
NUMBER_KEYS = ("confidence", "identity", "top_similarity")


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

    @property
    def count(self) -> int:
        return self._count

    # -- paging ---------------------------------------------------------------------------
    def row(self, row: int) -> dict[str, Any] | None:
        if self.project is None or not 0 <= row < self._count:
            return None
        page_no = row // PAGE_SIZE
        page = self._page(page_no)
        offset = row - page_no * PAGE_SIZE
        return page[offset] if offset < len(page) else None

    def _page(self, page_no: int) -> list[dict[str, Any]]:
        page = self._pages.get(page_no)
        if page is None:
            page = self.project.list_specimens(self.filter, sort=self.sort_key, descending=self.descending,
                                               offset=page_no * PAGE_SIZE, limit=PAGE_SIZE)
            self._pages[page_no] = page
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        return page

    def row_of(self, specimen_id: SpecimenId) -> int | None:
        """The row of a specimen if it is in a cached page (the view only needs visible ones)."""
        for page_no, page in self._pages.items():
            for i, r in enumerate(page):
                if r["id"] == specimen_id:
                    return page_no * PAGE_SIZE + i
        return None

    def find_row(self, specimen_id: SpecimenId, near: int = 0) -> int | None:
        """The row of a specimen under the current filter and sort, or None when the filter hides it.

        Looks in the cached pages, then the pages around ``near`` (where it was before a refresh),
        then asks the project whether the filter still shows it before reading the other pages.
        """
        row = self.row_of(specimen_id)
        if row is not None or self.project is None or not self._count:
            return row
        near_page = min(max(near, 0), self._count - 1) // PAGE_SIZE
        pages = [p for p in (near_page, near_page - 1, near_page + 1) if 0 <= p * PAGE_SIZE < self._count]
        for page_no in pages:
            self.row(page_no * PAGE_SIZE)
        row = self.row_of(specimen_id)
        if row is not None:
            return row
        ids = self.filter.ids
        only_it = replace(self.filter, ids=[specimen_id] if ids is None or specimen_id in ids else [])
        if not self.project.count_specimens(only_it):
            return None
        for page_no in range((self._count + PAGE_SIZE - 1) // PAGE_SIZE):  # moved far (a new sort order)
            if page_no not in pages:
                for i, r in enumerate(self._page(page_no)):
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
            if col.key == "confidence":
                return self._confidence_tip(r)
            if col.key == "final_bin_uri" and r.get("final_bin_uri") and r.get("bin_uri_confidence") is not None:
                return f"{r['final_bin_uri']}: BIN called at {confidence_text(r['bin_uri_confidence'])}"
            return col.text(r) or None
        if role == Qt.ItemDataRole.TextAlignmentRole and col.key in NUMBER_KEYS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _confidence_tip(r: dict[str, Any]) -> str | None:
        rank, name, conf = shown_call(r)
        if not rank:
            return None
        if conf is None:
            return f"{RANK_LABELS[rank]} {name}: your override (no machine confidence)"
        return f"{RANK_LABELS[rank]} {name} called at {confidence_text(conf)}"

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
