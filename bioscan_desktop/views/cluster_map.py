"""Cluster map: a 2-D UMAP of the specimens' barcode embeddings (engine.cluster), coloured by call,
cluster or status. Hover names a point, click opens it, lasso or box selects specimens for the table;
clusters whose members are mostly novel are outlined as putative species groups.

matplotlib (Qt backend) is imported when the first map is shown, not at start-up.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QStackedWidget, QVBoxLayout, QWidget,
)

from bioscan_desktop.presenters import STATUS_LABELS

COLOR_BY = (("Order", "order"), ("Family", "family"), ("Genus", "genus"), ("Cluster", "cluster"),
            ("Status", "status"))
MAX_LEGEND = 12
HOVER_PX = 8
STATUS_COLORS = {"ok": "#2e7d32", "novel": "#8e24aa", "error": "#c62828", "pending": "#f9a825"}


class ClusterMapView(QWidget):
    computeRequested = Signal()
    cancelRequested = Signal()
    specimenClicked = Signal(int)
    selectionMade = Signal(list, str)  # specimen ids, a label for the table's filter chip

    def __init__(self, parent=None):
        super().__init__(parent)
        self.map = None
        self._canvas = None
        self.compute_button = QPushButton("Compute map")
        self.compute_button.setToolTip("Project the specimens' barcode embeddings to 2-D (UMAP) and cluster them")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.color_by = QComboBox()
        for label, key in COLOR_BY:
            self.color_by.addItem(f"Colour: {label}", key)
        self.select_mode = QComboBox()
        self.select_mode.addItem("Select: lasso", "lasso")
        self.select_mode.addItem("Select: box", "box")
        self.groups = QCheckBox("Putative species groups")
        self.groups.setChecked(True)
        self.groups.setToolTip("Outline clusters in which most specimens are novel: candidate new species")
        self.progress = QProgressBar()
        self.progress.hide()
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.hover = QLabel("")
        self.hover.setStyleSheet("color: #333;")
        self.placeholder = QLabel("The cluster map places similar barcodes close together and groups them into "
                                  "clusters (putative species), without using the reference library.\n\n"
                                  "Click “Compute map” after an import.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        top = QHBoxLayout()
        for w in (self.compute_button, self.cancel_button, self.color_by, self.select_mode, self.groups):
            top.addWidget(w)
        top.addWidget(self.progress, 1)
        top.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.hover)
        layout.addWidget(self.info)
        self.compute_button.clicked.connect(self.computeRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.color_by.currentIndexChanged.connect(self.redraw)
        self.groups.toggled.connect(self.redraw)
        self.select_mode.currentIndexChanged.connect(self._make_selector)

    # -- state from the main window ------------------------------------------------------------
    def set_busy(self, busy: bool, message: str = "") -> None:
        self.compute_button.setEnabled(not busy)
        self.cancel_button.setVisible(busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
        self.info.setText(message)

    def set_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        self.info.setText(message[:1].upper() + message[1:])

    def set_message(self, text: str) -> None:
        self.placeholder.setText(text)
        self.stack.setCurrentWidget(self.placeholder)

    def clear(self, message: str = "Click “Compute map” to map and cluster this project's barcodes.") -> None:
        """Forget the map, its selection and the hover label (another project was opened or closed)."""
        self.map = None
        if getattr(self, "_selector", None) is not None:
            self._selector.set_active(False)
            self._selector = None
        self.hover.setText("")
        self.compute_button.setText("Compute map")
        self.set_busy(False)
        self.set_message(message)

    def set_map(self, cluster_map) -> None:
        self.map = cluster_map
        self._ensure_canvas()
        self.stack.setCurrentWidget(self._canvas)
        self.compute_button.setText("Recompute map")
        self.redraw()

    # -- drawing -------------------------------------------------------------------------------
    def _ensure_canvas(self) -> None:
        if self._canvas is not None:
            return
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 5), layout="constrained")
        self._canvas = FigureCanvasQTAgg(fig)
        self._canvas.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.ax = fig.add_subplot()
        self.stack.addWidget(self._canvas)
        self._canvas.mpl_connect("motion_notify_event", self._on_move)
        self._canvas.mpl_connect("button_press_event", self._on_click)
        self._annotation = None
        self._selector = None

    def _categories(self, key: str) -> list[str]:
        m = self.map
        if key == "cluster":
            return ["noise" if c < 0 else f"cluster {c + 1}" for c in m.labels]
        out = []
        for sid in m.specimen_ids:
            row = m.rows.get(sid, {})
            if key == "status":
                out.append(STATUS_LABELS.get(row.get("status"), row.get("status") or "?"))
            else:
                out.append(row.get(f"final_{key}") or "(not called)")
        return out

    def redraw(self) -> None:
        if self.map is None or self._canvas is None:
            return
        import matplotlib

        m, ax = self.map, self.ax
        ax.clear()
        key = self.color_by.currentData()
        cats = self._categories(key)
        counts = Counter(cats)
        shown = [c for c, _ in counts.most_common(MAX_LEGEND) if c not in ("(not called)", "noise")]
        cmap = matplotlib.colormaps["tab20"]
        colors = {c: cmap(i % 20) for i, c in enumerate(shown)}
        if key == "status":
            colors = {STATUS_LABELS[k]: v for k, v in STATUS_COLORS.items()}
        grey = (0.7, 0.7, 0.7, 0.8)
        point_colors = [colors.get(c, grey) for c in cats]
        xy = m.xy
        ax.scatter(xy[:, 0], xy[:, 1], c=point_colors, s=14, linewidths=0)
        handles = [matplotlib.lines.Line2D([], [], marker="o", ls="", color=colors[c], label=f"{c} ({counts[c]})")
                   for c in (shown if key != "status" else [c for c in colors if c in counts])]
        if len(counts) > len(handles):
            handles.append(matplotlib.lines.Line2D([], [], marker="o", ls="", color=grey, label="other / not called"))
        ax.legend(handles=handles, fontsize="small", loc="best", framealpha=0.85)
        groups = m.putative_species() if self.groups.isChecked() else []
        for n, cid in enumerate(groups, start=1):
            pts = xy[m.labels == cid]
            cx, cy = np.median(pts, axis=0)
            ax.scatter(pts[:, 0], pts[:, 1], s=30, facecolors="none", edgecolors="black", linewidths=0.8)
            ax.annotate(f"G{n}", (cx, cy), fontsize="small", fontweight="bold", ha="center", va="center",
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="black", lw=0.6, alpha=0.85))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{len(xy):,} barcodes · {len(m.consensus)} clusters", fontsize="medium")
        self._annotation = ax.annotate("", (0, 0), xytext=(10, 10), textcoords="offset points", fontsize="small",
                                       bbox=dict(boxstyle="round", fc="#ffffe0", ec="#888"), visible=False)
        self._canvas.draw_idle()
        self._screen_xy = None
        self._make_selector()
        self.info.setText(self._group_text(groups) + "\n" + m.summary)

    def _group_text(self, groups: list[int]) -> str:
        if not groups:
            return "No cluster is mostly novel: every group has close references in the library."
        parts = []
        for n, cid in enumerate(groups[:6], start=1):
            c = self.map.consensus[cid]
            names = " › ".join(v for v in (c.taxonomy.order, c.taxonomy.family, c.taxonomy.genus) if v)
            size = int(np.sum(self.map.labels == cid))
            parts.append(f"G{n}: {size} specimens" + (f" ({names})" if names else ""))
        more = f", and {len(groups) - 6} more" if len(groups) > 6 else ""
        return f"{len(groups)} putative species groups (clusters of mostly novel specimens): " + "; ".join(parts) + more

    def _make_selector(self) -> None:
        if self._canvas is None or self.map is None:
            return
        from matplotlib.widgets import LassoSelector, RectangleSelector

        if self._selector is not None:
            self._selector.set_active(False)
        if self.select_mode.currentData() == "lasso":
            self._selector = LassoSelector(self.ax, self._lasso_done, button=[1])
        else:
            self._selector = RectangleSelector(self.ax, self._box_done, button=[1], interactive=False,
                                               minspanx=5, minspany=5, spancoords="pixels")

    # -- interaction ---------------------------------------------------------------------------------
    def _nearest(self, event) -> int | None:
        if event.inaxes is not self.ax or self.map is None or event.x is None:
            return None
        if self._screen_xy is None:
            self._screen_xy = self.ax.transData.transform(self.map.xy)
        d = np.hypot(self._screen_xy[:, 0] - event.x, self._screen_xy[:, 1] - event.y)
        i = int(np.argmin(d))
        return i if d[i] <= HOVER_PX else None

    def point_text(self, i: int) -> str:
        sid = self.map.specimen_ids[i]
        row = self.map.rows.get(sid, {})
        name = next((row.get(f"final_{r}") for r in ("species", "genus", "family", "order") if row.get(f"final_{r}")),
                    "not called")
        cluster = int(self.map.labels[i])
        return (f"{row.get('specimen_key', sid)}: {name} · {STATUS_LABELS.get(row.get('status'), '')}"
                + (f" · cluster {cluster + 1}" if cluster >= 0 else ""))

    def _on_move(self, event) -> None:
        i = self._nearest(event)
        if self._annotation is None:
            return
        if i is None:
            if self._annotation.get_visible():
                self._annotation.set_visible(False)
                self._canvas.draw_idle()
            return
        text = self.point_text(i)
        self.hover.setText(text)
        self._annotation.xy = tuple(self.map.xy[i])
        self._annotation.set_text(text)
        self._annotation.set_visible(True)
        self._canvas.draw_idle()

    def _on_click(self, event) -> None:
        i = self._nearest(event)
        if i is not None:
            self.specimenClicked.emit(self.map.specimen_ids[i])

    def select_points(self, mask: np.ndarray, how: str) -> None:
        ids = sorted({self.map.specimen_ids[i] for i in np.flatnonzero(mask)})
        if ids:
            self.selectionMade.emit(ids, f"{len(ids):,} specimens selected on the map ({how})")

    def _lasso_done(self, vertices) -> None:
        from matplotlib.path import Path

        if len(vertices) < 3:
            return
        self.select_points(Path(vertices).contains_points(self.map.xy), "lasso")

    def _box_done(self, press, release) -> None:
        x0, x1 = sorted((press.xdata, release.xdata))
        y0, y1 = sorted((press.ydata, release.ydata))
        xy = self.map.xy
        self.select_points((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1), "box")
