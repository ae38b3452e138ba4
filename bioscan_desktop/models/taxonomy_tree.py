"""TaxonomyTreeModel: order > family > genus > species (> BIN) with counts and share of novel calls.

Wraps engine.project.TaxonNode trees (from Project.taxonomy_tree, or counted from a
reference library's taxonomy). Nodes are only turned into indexes when the view expands them.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt

from engine.project import TaxonNode

from bioscan_desktop.presenters import RANK_LABELS

UNCALLED = "(not called)"


class TaxonomyTreeModel(QAbstractItemModel):
    TaxonRole = Qt.ItemDataRole.UserRole + 1  # {rank: name} from the root to the node

    def __init__(self, parent=None):
        super().__init__(parent)
        self.root = TaxonNode("root", "", 0)
        self.novel: dict[tuple[str, ...], int] = {}
        self.count_header = "Specimens"
        self.show_novel = True
        self._parent: dict[int, TaxonNode] = {}
        self._path: dict[int, tuple[str, ...]] = {}

    def set_tree(self, root: TaxonNode, novel_root: TaxonNode | None = None, count_header: str = "Specimens") -> None:
        self.beginResetModel()
        self.root, self.count_header, self.show_novel = root, count_header, novel_root is not None
        self._parent.clear()
        self._path.clear()
        self._index_nodes(root, ())
        self.novel = {}
        if novel_root is not None:
            self._count_novel(novel_root, ())
        self.endResetModel()

    def _index_nodes(self, node: TaxonNode, path: tuple[str, ...]) -> None:
        self._path[id(node)] = path
        for child in node.children:
            self._parent[id(child)] = node
            self._index_nodes(child, path + (child.name,))

    def _count_novel(self, node: TaxonNode, path: tuple[str, ...]) -> None:
        self.novel[path] = node.count
        for child in node.children:
            self._count_novel(child, path + (child.name,))

    def node(self, index: QModelIndex | QPersistentModelIndex) -> TaxonNode:
        return index.internalPointer() if index.isValid() else self.root

    def taxon(self, index: QModelIndex | QPersistentModelIndex) -> dict[str, str]:
        """{rank: name} down to the node, as SpecimenFilter.taxon wants it."""
        node = self.node(index)
        chain = []
        while node is not self.root:
            chain.append(node)
            node = self._parent[id(node)]
        return {n.rank: n.name for n in reversed(chain)}

    # -- Qt model API ---------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:
        children = self.node(parent).children
        if 0 <= row < len(children) and 0 <= column < self.columnCount():
            return self.createIndex(row, column, children[row])
        return QModelIndex()

    def parent(self, index=None):  # also QObject.parent() when called without an index
        if index is None:
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        parent = self._parent.get(id(index.internalPointer()))
        if parent is None or parent is self.root:
            return QModelIndex()
        grand = self._parent[id(parent)]
        return self.createIndex(grand.children.index(parent), 0, parent)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 3 if self.show_novel else 2

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return ("Taxon", self.count_header, "Novel")[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return ("order › family › genus › species › BIN", f"{self.count_header.lower()} under this taxon",
                    "share of these specimens called novel (no close reference)")[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node: TaxonNode = index.internalPointer()
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return node.name or UNCALLED
            if col == 1:
                return f"{node.count:,}"
            n_novel = self.novel.get(self._path[id(node)], 0)
            return f"{n_novel / node.count:.0%}" if node.count and n_novel else ""
        if role == Qt.ItemDataRole.ToolTipRole and col == 0:
            return f"{RANK_LABELS.get(node.rank, node.rank)} {node.name or UNCALLED}: {node.count:,}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == 0 and not node.name:
            from PySide6.QtGui import QColor

            return QColor("#777777")
        if role == self.TaxonRole:
            return self.taxon(index)
        return None
