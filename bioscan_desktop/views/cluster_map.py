"""Cluster map: a project's putative species (engine.cluster.project.map_project_species) on a 2-D UMAP
of the specimens' embeddings, coloured by putative species, call or status.

A headline counts the putative species and how many have no close library match (those are
outlined). Hover names a point; a click selects the point's putative species into the results
table (and opens the specimen), as does the species picker; a lasso or box selects the specimens
inside it. The words are bioscan_desktop.cluster_text's.

matplotlib (Qt backend) is imported when the first map is shown, not at start-up.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QStackedWidget, QVBoxLayout,
    QWidget,
)

from bioscan_desktop import cluster_text
from bioscan_desktop.presenters import STATUS_COLORS, STATUS_LABELS

COLOR_BY = (("Putative species", "cluster"), ("Order", "order"), ("Family", "family"), ("Genus", "genus"),
            ("Status", "status"))
MAX_LEGEND = 12
MAX_OUTLINE_LABELS = 30  # clusters without a close match that get a number on the map (all are outlined)
HOVER_PX = 8
CLICK_PX = 4  # a press and release closer than this is a click, not a lasso or box
PICK_PROMPT = "Show a putative species in the table…"
DEFAULT_MESSAGE = "Click “Compute map” to map and cluster this project's barcodes."


class ClusterMapView(QWidget):
    computeRequested = Signal()
    cancelRequested = Signal()
    specimenClicked = Signal(int)
    selectionMade = Signal(list, str)  # specimen ids, a label for the table's filter chip

    def __init__(self, parent=None):
        super().__init__(parent)
        self.map = None
        self.selected_ids: list[int] = []  # what the last click, pick, lasso or box selected
        self._canvas = None
        self._selector = None
        self._highlight = None  # the ring around the selected specimens
        self._press_xy = None
        self.compute_button = QPushButton("Compute map")
        self.compute_button.setToolTip("Group the specimens into putative species (barcodes by alignment identity, "
                                       "photo-only specimens by their photos) and map them in 2-D (UMAP); the "
                                       "result is kept in the project until its specimens change")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.color_by = QComboBox()
        for label, key in COLOR_BY:
            self.color_by.addItem(f"Colour: {label}", key)
        self.select_mode = QComboBox()
        self.select_mode.addItem("Select: lasso", "lasso")
        self.select_mode.addItem("Select: box", "box")
        self.outline = QCheckBox("Outline: no close library match")
        self.outline.setChecked(True)
        self.outline.setToolTip("Outline putative species most of whose specimens were called novel: "
                                "candidate species the reference library lacks")
        self.picker = QComboBox()
        self.picker.setMinimumContentsLength(8)  # shrinkable: the window must fit 1280-px screens
        self.picker.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)  # wide when there is room
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setToolTip("Putative species without a close library match first, each group largest first")
        self.progress = QProgressBar()
        self.progress.hide()
        self.headline = QLabel("")
        self.headline.setStyleSheet("font-weight: bold; font-size: 14px;")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.hover = QLabel("")
        self.hover.setStyleSheet("color: #333;")
        self.placeholder = QLabel("The cluster map groups the specimens into putative species (barcodes by "
                                  "alignment identity, as BOLD's BINs) and places similar ones close together, "
                                  "without using the reference library.\n\nClick “Compute map” after an import.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        top = QHBoxLayout()
        for w in (self.compute_button, self.color_by, self.select_mode, self.outline, self.picker):
            top.addWidget(w)
        top.addStretch()
        busy = QHBoxLayout()  # a row of its own: in the top one it made the view too wide while computing
        busy.addWidget(self.progress, 1)
        busy.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(busy)
        layout.addWidget(self.headline)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.hover)
        layout.addWidget(self.info)
        self.compute_button.clicked.connect(self.computeRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.color_by.currentIndexChanged.connect(self.redraw)
        self.outline.toggled.connect(self.redraw)
        self.select_mode.currentIndexChanged.connect(self._make_selector)
        self.picker.activated.connect(self._picked)
        self._fill_picker()

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

    def clear(self, message: str = DEFAULT_MESSAGE) -> None:
        """Forget the map, its selection and the hover label (another project was opened or closed)."""
        self.map = None
        self.selected_ids = []
        self._highlight = None
        if self._selector is not None:
            self._selector.set_active(False)
            self._selector = None
        self._press_xy = None
        self.hover.setText("")
        self.headline.setText("")
        self._fill_picker()
        self.compute_button.setText("Compute map")
        self.set_busy(False)
        self.set_message(message)

    def set_map(self, species_map) -> None:
        """Show an engine.cluster.project.SpeciesMap."""
        self.map = species_map
        self.selected_ids = []
        self.hover.setText("")
        self.headline.setText(cluster_text.headline(species_map))
        self._fill_picker()
        self._ensure_canvas()
        self.stack.setCurrentWidget(self._canvas)
        self.compute_button.setText("Update map")  # recomputed only if the specimens changed since
        self.redraw()

    def _fill_picker(self) -> None:
        self.picker.clear()
        self.picker.addItem(PICK_PROMPT, None)
        if self.map is not None:
            for label, cid in cluster_text.cluster_choices(self.map):
                self.picker.addItem(label, cid)
        self.picker.setEnabled(self.map is not None)

    # -- drawing -------------------------------------------------------------------------------
    def _ensure_canvas(self) -> None:
        if self._canvas is not None:
            return
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 5), layout="constrained")
        self._canvas = FigureCanvasQTAgg(fig)
        # its size hint (the figure's 6x5 inches) would widen the window and squeeze the docks
        self._canvas.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self._canvas.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.ax = fig.add_subplot()
        self.stack.addWidget(self._canvas)
        self._canvas.mpl_connect("motion_notify_event", self._on_move)
        self._canvas.mpl_connect("button_press_event", self._on_press)
        self._canvas.mpl_connect("button_release_event", self._on_release)
        self._annotation = None

    def _categories(self, key: str) -> list[str]:
        m = self.map
        out = []
        for sid in m.specimen_ids:
            row = m.rows.get(sid, {})
            if key == "status":
                out.append(STATUS_LABELS.get(row.get("status"), row.get("status") or "?"))
            else:
                out.append(row.get(f"final_{key}") or "(not called)")
        return out

    def _colours(self, key: str, cmap) -> tuple[list, list[tuple[str, object]], bool]:
        """(a colour per point, legend entries (label, colour), whether some points are in no legend entry)."""
        m = self.map
        grey = (0.7, 0.7, 0.7, 0.8)
        if key == "cluster":  # every putative species coloured; the legend names the largest
            colours = [cmap(int(c) % 20) if c >= 0 else grey for c in m.labels]
            shown = range(min(MAX_LEGEND, m.n_clusters))
            return colours, [(cluster_text.cluster_label(m, c), cmap(c % 20)) for c in shown], m.n_clusters > MAX_LEGEND
        cats = self._categories(key)
        counts = Counter(cats)
        if key == "status":
            palette = {STATUS_LABELS[k]: v for k, v in STATUS_COLORS.items()}
            entries = [(f"{c} ({counts[c]:,})", palette[c]) for c in palette if c in counts]
        else:
            top = [c for c, _ in counts.most_common(MAX_LEGEND) if c != "(not called)"]
            palette = {c: cmap(i % 20) for i, c in enumerate(top)}
            entries = [(f"{c} ({counts[c]:,})", palette[c]) for c in top]
        return [palette.get(c, grey) for c in cats], entries, len(counts) > len(entries)

    def redraw(self) -> None:
        if self.map is None or self._canvas is None:
            return
        import matplotlib

        m, ax = self.map, self.ax
        ax.clear()
        xy = m.xy
        colours, entries, more = self._colours(self.color_by.currentData(), matplotlib.colormaps["tab20"])
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=14, linewidths=0)
        handles = [matplotlib.lines.Line2D([], [], marker="o", ls="", color=c, label=label) for label, c in entries]
        if more:
            handles.append(matplotlib.lines.Line2D([], [], marker="o", ls="", color=(0.7, 0.7, 0.7), label="others"))
        ax.legend(handles=handles, fontsize="small", loc="best", framealpha=0.85)
        if self.outline.isChecked():
            for n, cid in enumerate(m.no_close_match()):
                pts = xy[m.labels == cid]
                ax.scatter(pts[:, 0], pts[:, 1], s=30, facecolors="none", edgecolors="black", linewidths=0.8)
                if n < MAX_OUTLINE_LABELS:
                    cx, cy = np.median(pts, axis=0)
                    ax.annotate(str(cid + 1), (cx, cy), fontsize="small", fontweight="bold", ha="center",
                                va="center", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="black", lw=0.6,
                                                       alpha=0.85))
        self._highlight = None
        self._draw_selection()
        ax.set_xticks([])
        ax.set_yticks([])
        self._annotation = ax.annotate("", (0, 0), xytext=(10, 10), textcoords="offset points", fontsize="small",
                                       bbox=dict(boxstyle="round", fc="#ffffe0", ec="#888"), visible=False)
        self._annotation.set_in_layout(False)  # else the constrained layout shrinks the map to fit the hover label
        self._canvas.draw_idle()
        self._screen_xy = None
        self._make_selector()
        self.info.setText(cluster_text.coverage_text(m) + "\n" + m.summary)

    def _draw_selection(self) -> None:
        """Ring the selected specimens (replacing the previous ring, without redrawing the map)."""
        if self._canvas is None or self.map is None:
            return
        if self._highlight is not None:
            self._highlight.remove()
            self._highlight = None
        if self.selected_ids:
            xy = self.map.xy[np.isin(np.asarray(self.map.specimen_ids), self.selected_ids)]
            self._highlight = self.ax.scatter(xy[:, 0], xy[:, 1], s=46, facecolors="none", edgecolors="#d50000",
                                              linewidths=1.4)
        self._canvas.draw_idle()

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
        return cluster_text.point_text(self.map, i)

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

    def _on_press(self, event) -> None:
        self._press_xy = (event.x, event.y) if event.button == 1 else None

    def _on_release(self, event) -> None:
        press, self._press_xy = self._press_xy, None
        if press is None or event.x is None or np.hypot(event.x - press[0], event.y - press[1]) > CLICK_PX:
            return  # a drag: the lasso or box handles it
        i = self._nearest(event)
        if i is not None:
            self.select_cluster(int(self.map.labels[i]))
            self.specimenClicked.emit(self.map.specimen_ids[i])

    def _picked(self, index: int) -> None:
        cid = self.picker.itemData(index)
        self.picker.setCurrentIndex(0)
        if cid is not None:
            self.select_cluster(int(cid))

    def select_cluster(self, cluster_id: int) -> None:
        """Show one putative species' specimens in the results table."""
        if self.map is None or not 0 <= cluster_id < self.map.n_clusters:
            return
        self._select(self.map.members(cluster_id), cluster_text.selection_label(self.map, cluster_id))

    def select_points(self, mask: np.ndarray, how: str) -> None:
        ids = sorted({self.map.specimen_ids[i] for i in np.flatnonzero(mask)})
        if ids:
            self._select(ids, f"{len(ids):,} specimens selected on the map ({how})")

    def _select(self, ids: list[int], label: str) -> None:
        self.selected_ids = list(ids)
        self._draw_selection()
        self.selectionMade.emit(list(ids), label)

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
