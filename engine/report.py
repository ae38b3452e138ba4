"""A project summary report: counts per order and family, novel specimens, QC, mix-ups and conflicts.

Written as PDF (a page of charts, then the sections flowing over as many full pages as they
need), PNG (one sheet of charts) or HTML (charts embedded, tables). The QC section counts the
barcode records carrying each QC flag, the failed items by kind, the photo/barcode mix-ups
(``disagreement_rank``) and the barcode conflicts (``conflict_rank``), with their specimens.
Novel specimens are the ones a barcode flags: a photo alone never makes a specimen novel.
matplotlib is imported only here and only when a report is made, through its object API
with the Agg canvas, so it never changes the backend of a running GUI. Names are drawn as
plain text (``parse_math=False``): a "$" in a taxon or project name is not TeX.
"""
from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import atomic_output, check_output_folder
from engine.errors import BioscanError
from engine.export.dwc import xml_text
from engine.project import SpecimenFilter

TOP_FAMILIES = 25
MAX_TABLE_ROWS = 200


@dataclass
class Mixup:
    """A specimen whose evidence disagrees: its key, the rank, and the names each side gives there."""

    specimen_key: str
    rank: str
    names: list[str]  # photo/barcode: [barcode's, photo's]; conflict: each barcode's


@dataclass
class ReportData:
    title: str
    status: dict[str, int]
    orders: list[tuple[str, int]]
    families: list[tuple[str, int]]  # the TOP_FAMILIES largest, "(order) family"
    novel: list[dict[str, Any]]  # flagged by a barcode (call_modality dna or dna+image), at most MAX_TABLE_ROWS
    errors: list[dict[str, Any]]
    error_kinds: list[tuple[str, int]]
    runs: list[dict[str, Any]]
    qc_flags: list[tuple[str, int, int]] = field(default_factory=list)  # (flag, barcode records, specimens)
    qc_examples: dict[str, list[str]] = field(default_factory=dict)  # flag -> specimen keys (at most 12)
    mixups: list[Mixup] = field(default_factory=list)  # photo and barcode name different taxa
    conflicts: list[Mixup] = field(default_factory=list)  # two barcodes of a specimen name different taxa
    n_novel: int = 0  # every DNA-flagged novel specimen (``novel`` holds the first MAX_TABLE_ROWS)
    n_photo_novel: int = 0  # photo calls with no close reference: not counted as novel
    n_mixups: int = 0
    n_conflicts: int = 0


def error_kind(message: str) -> str:
    """A failure's category: the message without file names, details in brackets, or values."""
    text = re.sub(r"^[^:]*\.(jpe?g|png|tiff?|bmp|webp|fasta|fa|fas|fna|tsv|csv|txt|tab|gz|seq)\b:\s*", "", message,
                  flags=re.I)
    text = re.sub(r"\s*\(.*$", "", text)
    text = re.sub(r":\s*(contains|\d).*$", "", text)
    text = re.sub(r"line \d+", "line N", text)
    return text.strip() or message[:60]


def _evidence_names(detail, modality: str, rank: str) -> list[str]:
    """The names the items of one modality ("dna", "photo") of a specimen give at a rank."""
    ids = [it["id"] for it in detail.items if it["modality"] == modality]
    return list(dict.fromkeys(detail.calls[i][rank][0] for i in ids if i in detail.calls and detail.calls[i]
                              .get(rank, ("", 0))[0]))


def collect(project) -> ReportData:
    tree = project.taxonomy_tree(machine=False)
    orders = sorted(((n.name or "(uncalled)", n.count) for n in tree.children), key=lambda t: -t[1])
    families = sorted(((f"{o.name or '?'}: {f.name or '(uncalled)'}", f.count) for o in tree.children
                       for f in o.children), key=lambda t: -t[1])[:TOP_FAMILIES]
    novel, mixups, conflicts = [], [], []
    counts = Counter()
    for s in project.iter_specimens():
        if s["status"] == "novel":
            by_dna = s["call_modality"] in ("dna", "dna+image")
            counts["novel" if by_dna else "photo_novel"] += 1
            if by_dna and len(novel) < MAX_TABLE_ROWS:
                novel.append(s)
        for flag, found in (("disagreement_rank", mixups), ("conflict_rank", conflicts)):
            if s[flag]:
                counts[flag] += 1
                if len(found) < MAX_TABLE_ROWS:
                    found.append(s)
    novel.sort(key=lambda s: (s["confidence"] or 0.0, s["id"]))
    mixups = [Mixup(s["specimen_key"], s["disagreement_rank"], [
        " / ".join(_evidence_names(d, "dna", s["disagreement_rank"])) or "?",
        " / ".join(_evidence_names(d, "photo", s["disagreement_rank"])) or "?"])
        for s in mixups for d in [project.specimen(s["id"])]]
    conflicts = [Mixup(s["specimen_key"], s["conflict_rank"], _evidence_names(project.specimen(s["id"]), "dna",
                                                                              s["conflict_rank"]))
                 for s in conflicts]
    flag_records: Counter = Counter()
    flag_specimens: dict[str, dict[str, None]] = {}
    for key, _, flags in project.item_qc_flags():
        for flag in flags.split(";"):
            flag_records[flag] += 1
            flag_specimens.setdefault(flag, {})[key] = None
    qc_flags = [(f, n, len(flag_specimens[f])) for f, n in flag_records.most_common()]
    errors = project.item_errors()
    kinds = Counter(error_kind(e["error"] or "") for e in errors).most_common()
    return ReportData(xml_text(f"BIOSCAN Desktop project {project.path.stem}"), project.status_counts(), orders,
                      families, novel, errors[:MAX_TABLE_ROWS], kinds, project.import_runs(), qc_flags,
                      {f: list(keys)[:12] for f, keys in flag_specimens.items()}, mixups, conflicts,
                      counts["novel"], counts["photo_novel"], counts["disagreement_rank"], counts["conflict_rank"])


def _qc_pairs(data: ReportData) -> list[tuple[str, int]]:
    """The QC chart's bars: records per QC flag, failed items per kind, mix-ups and conflicts."""
    return ([(f"flag: {f}", n) for f, n, _ in data.qc_flags] + [(f"failed: {k}", n) for k, n in data.error_kinds]
            + [(label, n) for label, n in (("photo/barcode mix-ups", data.n_mixups),
                                           ("barcode conflicts", data.n_conflicts)) if n])


def _bar(ax, pairs: list[tuple[str, int]], title: str, color: str) -> None:
    if not pairs:
        ax.text(0.5, 0.5, "none", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(title)
        return
    labels, values = zip(*reversed(pairs))
    bars = ax.barh(range(len(values)), values, color=color)
    ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_yticks(range(len(values)), labels=[xml_text(lb[:40]) for lb in labels], fontsize=7, parse_math=False)
    ax.set_title(title)
    ax.set_xlabel("specimens")


def _charts(data: ReportData):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8.5))
    fig.suptitle(f"{data.title}: {sum(data.status.values())} specimens", parse_math=False)
    axes = fig.subplots(2, 2)
    _bar(axes[0][0], [(k, v) for k, v in data.status.items()], "status", "#4c72b0")
    _bar(axes[0][1], data.orders[:20], "specimens per order", "#55a868")
    _bar(axes[1][0], data.families, f"largest {TOP_FAMILIES} families", "#8172b2")
    _bar(axes[1][1], _qc_pairs(data)[:14], "QC flags, failures and mix-ups", "#c44e52")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


LINES_PER_PAGE = 84
LINE_HEIGHT = 0.0108  # of the page's height: 84 lines of 7-point text fill a US-letter page


def _text_pages(title: str, lines: list[str]) -> list:
    """Figures holding ``lines`` (a "## " line is a section heading), each page filled before the next."""
    from matplotlib.figure import Figure

    pages = [lines[i:i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)] or [[]]
    figs = []
    for n, page in enumerate(pages, start=1):
        fig = Figure(figsize=(8.5, 11))
        fig.text(0.05, 0.975, f"{title}   (page {n + 1})", fontsize=8, color="#555555", va="top",
                 parse_math=False)
        for i, line in enumerate(page):
            y = 0.95 - i * LINE_HEIGHT
            if line.startswith("## "):
                fig.text(0.05, y, xml_text(line[3:]), fontsize=9, weight="bold", va="top", parse_math=False)
            else:
                fig.text(0.05, y, xml_text(line), family="monospace", fontsize=7, va="top", parse_math=False)
        figs.append(fig)
    return figs


def _limited(lines: list[str], total: int) -> list[str]:
    return lines + ([f"... and {total - len(lines)} more (see the CSV export)"] if total > len(lines) else [])


def _novel_lines(data: ReportData) -> list[str]:
    lines = [f"{s['specimen_key'][:24]:24}  new at {s['novel_rank'] or '?':8}  nearest {s['top_match_species'] or '-':30}"
             f"  sim {s['top_similarity'] or 0:.3f}" for s in data.novel]
    lines = _limited(lines, data.n_novel) or ["none"]
    if data.n_photo_novel:
        lines.append(f"({data.n_photo_novel} photo-only calls have no close reference; a photo alone does not "
                     "make a specimen novel)")
    return lines


def _qc_lines(data: ReportData) -> list[str]:
    lines = ["QC flags (barcode records / specimens):"]
    lines += [f"  {f:24} {n:6d} records {m:6d} specimens   e.g. {', '.join(data.qc_examples[f][:4])}"
              for f, n, m in data.qc_flags] or ["  none"]
    lines += ["", "failed items by kind:"]
    lines += [f"  {k[:70]:70} {n:6d}" for k, n in data.error_kinds] or ["  none"]
    if data.errors:
        lines += ["", "failed items:"] + _limited(
            [f"  {e['specimen_key'][:22]:22} {Path(e['path']).name[:24]:24} {(e['error'] or '')[:70]}"
             for e in data.errors], len(data.errors))
    return lines


def _mixup_lines(found: list[Mixup], total: int, sides: str) -> list[str]:
    lines = [f"  {m.specimen_key[:26]:26} at {m.rank:7} {sides}: {' vs '.join(m.names)[:80]}" for m in found]
    return _limited(lines, total) or ["  none"]


def _summary_lines(data: ReportData) -> list[str]:
    lines = [f"{k:8} {v}" for k, v in data.status.items()] + ["", "per order:"]
    lines += [f"  {o:28} {n}" for o, n in data.orders]
    return lines


def _run_lines(data: ReportData) -> list[str]:
    return [f"  #{r['id']} {r['started_at']} {r['status']:10} app {r['app_version']} "
            f"library {r['library_id'][:8] if r['library_id'] else '-'} models "
            + (", ".join(f"{m.get('name')} {m.get('version', '')}" for m in r["models"]) or "-") for r in data.runs[:30]]


def _document(data: ReportData) -> list[str]:
    """The report's sections as lines, in reading order."""
    return (["## Summary"] + _summary_lines(data)
            + ["", f"## Novel specimens ({data.n_novel}, flagged by their barcodes)"] + _novel_lines(data)
            + ["", f"## QC ({sum(n for _, n, _ in data.qc_flags)} flagged barcode records, "
                   f"{sum(n for _, n in data.error_kinds)} failed items)"] + _qc_lines(data)
            + ["", f"## Photo/barcode mix-ups ({data.n_mixups})"]
            + _mixup_lines(data.mixups, data.n_mixups, "barcode vs photo")
            + ["", f"## Barcode conflicts ({data.n_conflicts}: one specimen id, barcodes naming different taxa)"]
            + _mixup_lines(data.conflicts, data.n_conflicts, "barcodes")
            + ["", f"## Import runs ({len(data.runs)})"] + _run_lines(data))


def _png_bytes(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


def write_report(project, path: str | Path) -> Path:
    """Write the report (atomically, engine.atomic); the format follows the suffix (.pdf, .png, .html)."""
    path = check_output_folder(path)
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".png", ".html", ".htm"):
        raise BioscanError(f"{path.name}: a report is .pdf, .png or .html")
    data = collect(project)
    with atomic_output(path) as tmp:
        if suffix == ".png":
            tmp.write_bytes(_png_bytes(_charts(data)))
        elif suffix == ".pdf":
            from matplotlib.backends.backend_pdf import PdfPages

            with PdfPages(tmp) as pdf:
                for fig in (_charts(data), *_text_pages(data.title, _document(data))):
                    pdf.savefig(fig)
        else:
            tmp.write_text(_html(data), encoding="utf-8", errors="backslashreplace")
    return path


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(data: ReportData) -> str:
    chart = base64.b64encode(_png_bytes(_charts(data))).decode("ascii")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style></head><body>",
        f"<h1>{html.escape(data.title)}</h1>",
        _table(["status", "specimens"], [[k, v] for k, v in data.status.items()]),
        f"<p><img alt='charts' src='data:image/png;base64,{chart}' style='max-width:100%'></p>",
        "<h2>Specimens per order</h2>", _table(["order", "specimens"], [list(t) for t in data.orders]),
        "<h2>Largest families</h2>", _table(["order: family", "specimens"], [list(t) for t in data.families]),
        f"<h2>Novel specimens ({data.n_novel}, flagged by their barcodes)</h2>",
        _table(["specimen", "new at rank", "nearest reference species", "similarity", "identity"],
               [[s["specimen_key"], s["novel_rank"], s["top_match_species"], s["top_similarity"], s["identity"]]
                for s in data.novel]),
        (f"<p>{data.n_photo_novel} photo-only calls have no close reference; a photo alone does not make a "
         "specimen novel.</p>") if data.n_photo_novel else "",
        f"<h2>QC ({sum(n for _, n, _ in data.qc_flags)} flagged barcode records, "
        f"{sum(n for _, n in data.error_kinds)} failed items)</h2>",
        _table(["QC flag", "barcode records", "specimens", "e.g."],
               [[f, n, m, ", ".join(data.qc_examples[f][:6])] for f, n, m in data.qc_flags]),
        _table(["failed: kind", "items"], [list(t) for t in data.error_kinds]),
        _table(["specimen", "file", "error"], [[e["specimen_key"], Path(e["path"]).name, e["error"]]
                                               for e in data.errors]),
        f"<h2>Photo/barcode mix-ups ({data.n_mixups})</h2>",
        _table(["specimen", "rank", "barcode", "photo"], [[m.specimen_key, m.rank, *m.names] for m in data.mixups]),
        f"<h2>Barcode conflicts ({data.n_conflicts})</h2>",
        _table(["specimen", "rank", "the barcodes name"], [[m.specimen_key, m.rank, " vs ".join(m.names)]
                                                           for m in data.conflicts]),
        "<h2>Import runs</h2>",
        _table(["run", "started", "status", "app", "library", "models", "counts"],
               [[r["id"], r["started_at"], r["status"], r["app_version"], r["library_id"],
                 ", ".join(f"{m.get('name')} {m.get('version', '')}" for m in r["models"]),
                 ", ".join(f"{k} {v}" for k, v in r["counts"].items())] for r in data.runs]),
        "</body></html>",
    ]
    return "\n".join(parts)
