"""A project summary report: counts per order and family, novel specimens, QC failures, with charts.

Written as PDF (several pages), PNG (one sheet of charts) or HTML (charts embedded, tables).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic import atomic_output, check_output_folder
from engine.errors import BioscanError
from engine.export.dwc import xml_text
from engine.project import SpecimenFilter

TOP_FAMILIES = 25
MAX_TABLE_ROWS = 200


@dataclass
class ReportData:
    title: str
    status: dict[str, int]
    orders: list[tuple[str, int]]
    families: list[tuple[str, int]]  # the TOP_FAMILIES largest, "(order) family"
    novel: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    error_kinds: list[tuple[str, int]]
    runs: list[dict[str, Any]]


def error_kind(message: str) -> str:
    """A failure's category: the message without file names, details in brackets, or values."""
    text = re.sub(r"^[^:]*\.(jpe?g|png|tiff?|bmp|webp|fasta|fa|fas|fna|tsv|csv|txt|tab|gz|seq)\b:\s*", "", message,
                  flags=re.I)
    text = re.sub(r"\s*\(.*$", "", text)
    text = re.sub(r":\s*(contains|\d).*$", "", text)
    text = re.sub(r"line \d+", "line N", text)
    return text.strip() or message[:60]


def collect(project) -> ReportData:
    tree = project.taxonomy_tree(machine=False)
    orders = sorted(((n.name or "(uncalled)", n.count) for n in tree.children), key=lambda t: -t[1])
    families = sorted(((f"{o.name or '?'}: {f.name or '(uncalled)'}", f.count) for o in tree.children
                       for f in o.children), key=lambda t: -t[1])[:TOP_FAMILIES]
    novel = project.list_specimens(SpecimenFilter(status="novel"), sort="confidence", limit=MAX_TABLE_ROWS)
    errors = project.item_errors()
    kinds = Counter(error_kind(e["error"] or "") for e in errors).most_common()
    return ReportData(xml_text(f"BIOSCAN Desktop project {project.path.stem}"), project.status_counts(), orders, families,
                      novel, errors[:MAX_TABLE_ROWS], kinds, project.import_runs())


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
    _bar(axes[1][1], data.error_kinds[:12], "QC and input failures", "#c44e52")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _text_page(title: str, lines: list[str]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 11))
    fig.text(0.05, 0.96, title, fontsize=13, weight="bold", va="top", parse_math=False)
    text = "\n".join(xml_text(line) for line in lines[:70]) + ("\n..." if len(lines) > 70 else "")
    fig.text(0.05, 0.92, text, family="monospace", fontsize=7, va="top", parse_math=False)
    return fig


def _novel_lines(data: ReportData) -> list[str]:
    return [f"{s['specimen_key'][:24]:24}  new at {s['novel_rank'] or '?':8}  nearest {s['top_match_species'] or '-':30}"
            f"  sim {s['top_similarity'] or 0:.3f}" for s in data.novel]


def _error_lines(data: ReportData) -> list[str]:
    return [f"{k[:70]:70} {n:6d}" for k, n in data.error_kinds] + [""] + [
        f"{e['specimen_key'][:22]:22} {Path(e['path']).name[:24]:24} {(e['error'] or '')[:70]}" for e in data.errors]


def _summary_lines(data: ReportData) -> list[str]:
    lines = [f"{k:8} {v}" for k, v in data.status.items()] + ["", "per order:"]
    lines += [f"  {o:28} {n}" for o, n in data.orders]
    lines += ["", "import runs:"] + [f"  #{r['id']} {r['started_at']} {r['status']} app {r['app_version']} "
                                     f"library {r['library_id'][:8] if r['library_id'] else '-'}" for r in data.runs[:10]]
    return lines


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
                for fig in (_charts(data), _text_page("Summary", _summary_lines(data)),
                            _text_page(f"Novel specimens ({data.status.get('novel', 0)})", _novel_lines(data)),
                            _text_page(f"QC and input failures ({sum(n for _, n in data.error_kinds)})",
                                       _error_lines(data))):
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
        f"<h2>Novel specimens ({data.status.get('novel', 0)})</h2>",
        _table(["specimen", "new at rank", "nearest reference species", "similarity", "identity"],
               [[s["specimen_key"], s["novel_rank"], s["top_match_species"], s["top_similarity"], s["identity"]]
                for s in data.novel]),
        "<h2>QC and input failures</h2>", _table(["kind", "items"], [list(t) for t in data.error_kinds]),
        _table(["specimen", "file", "error"], [[e["specimen_key"], Path(e["path"]).name, e["error"]]
                                               for e in data.errors]),
        "<h2>Import runs</h2>",
        _table(["run", "started", "status", "app", "library", "models", "counts"],
               [[r["id"], r["started_at"], r["status"], r["app_version"], r["library_id"],
                 ", ".join(f"{m.get('name')} {m.get('version', '')}" for m in r["models"]),
                 ", ".join(f"{k} {v}" for k, v in r["counts"].items())] for r in data.runs]),
        "</body></html>",
    ]
    return "\n".join(parts)
