"""Specimen detail: the call per rank with confidence, warnings, review buttons, photo, sequence, matches, history."""
from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget, QTableWidgetItem,
    QTabWidget, QTextBrowser, QVBoxLayout, QWidget,
)

from engine.project import CALL_RANKS, SpecimenDetail

from bioscan_desktop.presenters import (
    IDENTITY_TIP, RANK_LABELS, REVIEW_LABELS, SIMILARITY_TIP, STATUS_HELP, confidence_text, given_disagreements,
    identity_text, match_scores_note, modality_disagreements, photo_call_note, qc_summary, shown_call, similarity_text,
    status_text,
)
from bioscan_desktop.views.photo_view import PhotoView

BASES_PER_LINE = 40
# scores beside the name they support, so they are on screen in a 400-px dock
MATCH_COLUMNS = ("#", "Identity", "Embedding\nsimilarity", "Species", "Genus", "Family", "Order", "BIN", "Reference")
SCORE_COLUMNS = (1, 2)


def _readonly_table(rows: int, headers: tuple[str, ...]) -> QTableWidget:
    t = QTableWidget(rows, len(headers))
    t.setHorizontalHeaderLabels(list(headers))
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.setWordWrap(False)
    return t


def sequence_html(sequence: str) -> str:
    """Numbered lines of 60 bases; IUPAC ambiguity codes (anything not A/C/G/T) highlighted."""
    lines = []
    for start in range(0, len(sequence), BASES_PER_LINE):
        chunk = sequence[start:start + BASES_PER_LINE]
        marked = "".join(c if c in "ACGT" else f'<span style="background:#ffcc80" title="ambiguous base">{c}</span>'
                         for c in html.escape(chunk))
        lines.append(f'<span style="color:#888">{start + 1:>5}</span> {marked}')
    return "<pre style='font-family: monospace; font-size: 9pt'>" + "\n".join(lines) + "</pre>"


class SpecimenDetailView(QWidget):
    # specimen id, action ("accept" | "override" | "annotate"); the main window asks for names/notes
    reviewRequested = Signal(int, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.detail: SpecimenDetail | None = None
        self.title = QLabel("No specimen selected")
        font = QFont(self.title.font())
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.subtitle = QLabel("Select a row in the table to see its evidence here.")
        self.subtitle.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setObjectName("warning")
        self.warning.setStyleSheet("#warning { background: #fff3e0; border: 1px solid #ef6c00; border-radius: 4px;"
                                   " padding: 6px; color: #5d2c00; }")
        self.warning.hide()

        self.calls = _readonly_table(len(CALL_RANKS), ("Rank", "Call", "Confidence", "Note"))
        self.calls.setFixedHeight(self.calls.horizontalHeader().sizeHint().height()
                                  + len(CALL_RANKS) * self.calls.verticalHeader().defaultSectionSize() + 4)
        hh = self.calls.horizontalHeader()
        for c in (1, 3):  # the call and its note share the width (a long override note must not hide the call)
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.Stretch)
        for c in (0, 2):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)

        self.accept_button = QPushButton("Accept call")
        self.accept_button.setToolTip("Confirm the machine call (Ctrl+Return)")
        self.override_button = QPushButton("Override…")
        self.override_button.setToolTip("Enter your own names (Ctrl+E); the machine call is kept")
        self.note_button = QPushButton("Add note…")
        self.note_button.setToolTip("Attach a note without changing the call (Ctrl+M)")
        self.accept_button.clicked.connect(lambda: self._request("accept"))
        self.override_button.clicked.connect(lambda: self._request("override"))
        self.note_button.clicked.connect(lambda: self._request("annotate"))
        buttons = QHBoxLayout()
        for b in (self.accept_button, self.override_button, self.note_button):
            buttons.addWidget(b)

        self.photo = PhotoView()
        self.sequence = QTextBrowser()
        self.matches = _readonly_table(0, MATCH_COLUMNS)
        self.matches.horizontalHeader().setStretchLastSection(True)
        for col, tip in zip(SCORE_COLUMNS, (IDENTITY_TIP, SIMILARITY_TIP)):
            self.matches.horizontalHeaderItem(col).setToolTip(tip)
        self.matches_note = QLabel("")
        self.matches_note.setWordWrap(True)
        self.matches_note.setStyleSheet("color: #555;")
        matches_page = QWidget()
        matches_layout = QVBoxLayout(matches_page)
        matches_layout.setContentsMargins(0, 4, 0, 0)
        matches_layout.addWidget(self.matches_note)
        matches_layout.addWidget(self.matches, 1)
        self.history = QTextBrowser()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.photo, "Photo")
        self.tabs.addTab(self.sequence, "Sequence")
        self.tabs.addTab(matches_page, "Matches")
        self.tabs.addTab(self.history, "History")

        self.body = QWidget()  # hidden until a specimen is shown
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.calls)
        body.addLayout(buttons)
        body.addWidget(self.tabs, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addWidget(self.status)
        layout.addWidget(self.warning)
        layout.addWidget(self.body, 1)
        layout.addStretch(0)
        self.clear()

    # -- inputs ----------------------------------------------------------------------------------
    def clear(self) -> None:
        self.detail = None
        self.title.setText("No specimen selected")
        self.subtitle.setText("Select a row in the table (or a point on the cluster map) to see its evidence here.")
        self.status.setText("")
        self.warning.hide()
        self.calls.clearContents()
        self.matches.setRowCount(0)
        self.sequence.clear()
        self.history.clear()
        self.photo.placeholder("")
        self._set_buttons(False)
        self.body.hide()

    def _set_buttons(self, enabled: bool) -> None:
        for b in (self.accept_button, self.override_button, self.note_button):
            b.setEnabled(enabled)

    @property
    def specimen_id(self) -> int | None:
        return None if self.detail is None else self.detail.specimen["id"]

    def show_detail(self, detail: SpecimenDetail) -> None:
        """Show a specimen; the same specimen shown again (a refresh) keeps the photo it shows."""
        same_specimen = self.specimen_id == detail.specimen["id"]
        self.detail = detail
        s = detail.specimen
        self.title.setText(s["specimen_key"])
        ids = [f"processid {s['processid']}" if s.get("processid") else "",
               f"sample {s['sampleid']}" if s.get("sampleid") else ""]
        files = sorted({it["file_name"] for it in detail.items})
        self.subtitle.setText(" · ".join(x for x in ids if x) + ("\n" if any(ids) else "")
                              + f"{s['n_barcodes']} barcode(s), {s['n_photos']} photo(s) from "
                              + ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else ""))
        rank, name, conf = shown_call(s)
        call = (f"<br>Call: {RANK_LABELS[rank].lower()} <i>{html.escape(name)}</i>"
                + (f" ({confidence_text(conf)})" if conf is not None else " (your override)")) if rank else ""
        photo = photo_call_note(detail)  # what a photo's call rests on: photo or DNA references, and why it stopped
        self.status.setText(f"<b>{status_text(s['status'], s.get('novel_rank') or '')}</b>: "
                            f"{html.escape(STATUS_HELP.get(s['status'], ''))}"
                            + (f" · review: {REVIEW_LABELS[s['review']]}" if s.get("review") else "") + call
                            + (f"<br>{html.escape(photo)}" if photo else ""))
        self._show_warnings(detail)
        self._show_calls(s, detail)
        self._show_sequence(detail)
        self._show_matches(detail)
        self._show_history(detail)
        self._set_buttons(True)
        self.body.show()
        self.accept_button.setEnabled(s["status"] in ("ok", "novel"))
        if not s["n_photos"]:
            self.photo.placeholder("No photo of this specimen")
            if self.tabs.currentWidget() is self.photo and s["n_barcodes"]:
                self.tabs.setCurrentWidget(self.sequence)
        elif not (same_specimen and self.photo.has_photo):
            self.photo.placeholder("Loading photo…")

    def show_photo(self, specimen_id: int, pixmap: QPixmap | None) -> None:
        if specimen_id != self.specimen_id:
            return  # the user moved on
        if pixmap is None:
            self.photo.placeholder("The photo could not be read (moved or changed since the import?)")
        else:
            self.photo.set_pixmap(pixmap)

    # -- sections ----------------------------------------------------------------------------------
    def _show_warnings(self, detail: SpecimenDetail) -> None:
        s, lines = detail.specimen, []
        for rank, dna, img in modality_disagreements(detail):
            lines.append(f"<b>Photo and barcode disagree</b> at {RANK_LABELS[rank].lower()}: the barcode says "
                         f"<i>{html.escape(dna)}</i>, the photo says <i>{html.escape(img)}</i>.")
        given = given_disagreements(detail)
        conflicts = [d for d in given if d[1]]
        for rank, called, name in conflicts[:2]:
            lines.append(f"The input file names the {RANK_LABELS[rank].lower()} <i>{html.escape(name)}</i>; "
                         f"the barcode says <i>{html.escape(called)}</i>.")
        uncalled = [d for d in given if not d[1]]
        if uncalled and not conflicts:
            finest = [d for d in uncalled if d[0] != "bin_uri"] or uncalled
            lines.append(f"The input file names <i>{html.escape(finest[-1][2])}</i>; the barcode could not be called "
                         f"from the {RANK_LABELS[uncalled[0][0]].lower()} down (no close enough reference in the "
                         f"library).")
        if s.get("error"):
            lines.append(f"<b>Error:</b> {html.escape(s['error'])}")
        if s.get("review") == "stale":
            lines.append("You accepted an earlier call; a later import changed it. Please review again.")
        self.warning.setText("<br>".join(lines))
        self.warning.setVisible(bool(lines))

    def _show_calls(self, s: dict[str, Any], detail: SpecimenDetail) -> None:
        given = next((it["given"] for it in detail.items if it.get("given")), {})
        for row, rank in enumerate(CALL_RANKS):
            machine = s.get(rank) or ""
            final = s.get(f"final_{rank}") or ""
            conf = s.get(f"{rank}_confidence")
            note = ""
            if s.get("review") == "overridden" and final != machine:
                note = f"you: {final or '(none)'}"
            elif given.get(rank) and given[rank] != machine:
                note = f"file: {given[rank]}"
            cells = (RANK_LABELS[rank], machine or "—", confidence_text(conf) if machine else "", note)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1 and not machine:
                    item.setForeground(Qt.GlobalColor.gray)
                    item.setToolTip("not called: no name reached the confidence needed at this rank")
                if col == 3 and text:
                    item.setToolTip("your override" if text.startswith("you") else "name given in the input file")
                self.calls.setItem(row, col, item)

    def _show_sequence(self, detail: SpecimenDetail) -> None:
        parts = []
        for it in detail.items:
            if it["modality"] != "dna":
                continue
            head = f"<p><b>{html.escape(it['record_key'] or it['file_name'])}</b> ({html.escape(it['file_name'])}): "
            head += html.escape(qc_summary(it)) + "</p>"
            if it.get("error"):
                head += f"<p style='color:#c62828'>{html.escape(it['error'])}</p>"
            parts.append(head + (sequence_html(it["sequence"]) if it.get("sequence") else ""))
        if parts:
            parts.append("<p style='color:#888'>Highlighted: ambiguous bases (IUPAC codes other than A, C, G, T). "
                         "The sequence shown is after cleaning (gaps removed, ends trimmed, forward strand).</p>")
        self.sequence.setHtml("".join(parts) or "<p>No barcode for this specimen.</p>")

    def _show_matches(self, detail: SpecimenDetail) -> None:
        call_item = detail.specimen.get("call_item_id")
        matches = detail.matches.get(call_item) or next(iter(detail.matches.values()), [])
        has_identity = any(m["identity"] is not None for m in matches)
        self.matches.setRowCount(len(matches))
        for row, m in enumerate(matches):
            cells = (str(m["position"] + 1), identity_text(m["identity"]), similarity_text(m["similarity"]),
                     m["species"], m["genus"], m["family"], m["order"], m["bin_uri"],
                     m["record_id"])
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text or "")
                if col in SCORE_COLUMNS or col == 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.matches.setItem(row, col, item)
        self.matches.setColumnHidden(SCORE_COLUMNS[0], not has_identity)
        self.matches_note.setText(match_scores_note(has_identity) if matches else
                                  "No reference matches for this specimen.")
        self.matches.resizeColumnsToContents()

    def _show_history(self, detail: SpecimenDetail) -> None:
        if not detail.annotations:
            self.history.setHtml("<p>No reviews yet. Accept, override or annotate the call above; each review "
                                 "is kept with your name and the date.</p>")
            return
        rows = []
        for a in reversed(detail.annotations):
            what = {"accept": "accepted the call", "override": "overrode the call",
                    "annotate": "added a note"}[a["action"]]
            names = " › ".join(a[r] for r in CALL_RANKS[:4] if a.get(r)) if a["action"] != "annotate" else ""
            rows.append(f"<p><b>{html.escape(a['user'])}</b> {what} on {html.escape(a['created_at'])}"
                        + (f": <i>{html.escape(names)}</i>" if names else "")
                        + (f"<br>“{html.escape(a['note'])}”" if a.get("note") else "") + "</p>")
        self.history.setHtml("".join(rows))

    def _request(self, action: str) -> None:
        if self.detail is not None:
            self.reviewRequested.emit(self.specimen_id, action)
