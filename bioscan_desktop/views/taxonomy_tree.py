"""Taxonomy tree of the project's calls (selecting a node filters the table) or of the reference library."""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel, QTreeView, QVBoxLayout, QWidget

from bioscan_desktop.models.taxonomy_tree import TaxonomyTreeModel

SOURCES = (("Specimens in this project", "project"), ("Reference library", "library"))
TREE_RANKS = ("order", "family", "genus", "species")
TREE_RANKS_BIN = TREE_RANKS + ("bin_uri",)


class TaxonomyTreeView(QWidget):
    taxonSelected = Signal(dict)  # {rank: name} of a project node; {} = everything
    reloadRequested = Signal(str, tuple)  # source, ranks

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = TaxonomyTreeModel(self)
        self.source = QComboBox()
        for label, key in SOURCES:
            self.source.addItem(label, key)
        self.bins = QCheckBox("BINs")
        self.bins.setToolTip("Show BOLD Barcode Index Numbers under each species")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #555;")
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        hh = self.tree.header()
        hh.setStretchLastSection(False)
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        top = QHBoxLayout()
        top.addWidget(self.source, 1)
        top.addWidget(self.bins)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.info)
        self.source.currentIndexChanged.connect(self._reload)
        self.bins.toggled.connect(self._reload)
        self.tree.selectionModel().currentChanged.connect(self._current_changed)
        self.model.modelReset.connect(self._after_reset)

    @property
    def current_source(self) -> str:
        return self.source.currentData()

    @property
    def ranks(self) -> tuple[str, ...]:
        return TREE_RANKS_BIN if self.bins.isChecked() else TREE_RANKS

    def _reload(self) -> None:
        self.reloadRequested.emit(self.current_source, self.ranks)

    def set_busy(self, message: str) -> None:
        self.info.setText(message)

    def set_project_tree(self, root, novel_root) -> None:
        if self.current_source != "project":
            return
        self.model.set_tree(root, novel_root, "Count")
        self.info.setText("Select a taxon to show its specimens in the table. Novel: share called new "
                          "(no close reference)." if root.count else "No specimens yet.")

    def set_library_tree(self, root) -> None:
        if self.current_source != "library":
            return
        self.model.set_tree(root, None, "References")
        self.info.setText(f"{root.count:,} reference barcodes in the library (browse only).")

    def _after_reset(self) -> None:
        if self.model.rowCount() <= 12:
            self.tree.expandToDepth(0)
        hh = self.tree.header()
        for col, width in ((1, 62), (2, 46)):  # narrow numbers: the names need the room
            if col < self.model.columnCount():
                hh.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)
                hh.resizeSection(col, width)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self.current_source == "project" and current.isValid():
            self.taxonSelected.emit(self.model.taxon(current))

    def select_taxon(self, taxon: dict[str, str]) -> bool:
        """Select the node for {rank: name, ...} (used by tests and by 'show in tree')."""
        parent = QModelIndex()
        found = QModelIndex()
        for name in taxon.values():
            for row in range(self.model.rowCount(parent)):
                idx = self.model.index(row, 0, parent)
                if self.model.node(idx).name == name:
                    found = parent = idx
                    break
            else:
                return False
        self.tree.setCurrentIndex(found)
        self.tree.scrollTo(found)
        return True

    def clear_selection(self) -> None:
        self.tree.selectionModel().blockSignals(True)
        self.tree.clearSelection()
        self.tree.setCurrentIndex(QModelIndex())
        self.tree.selectionModel().blockSignals(False)
