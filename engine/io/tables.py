"""Delimited tables (TSV/CSV, optionally gzipped) with column-name normalisation.

Recognised dialects:
- ``bioscan-5m``: ``processid, sampleid, dna_barcode, order, family, ..., dna_bin``
- ``bioscan-1m``: BarcodeBERT / BIOSCAN-1M, ``nucleotides, order_name ... species_name, bin_uri``
- ``bold-bcdm``: a BOLD v5 public data package (BCDM columns: ``marker_code``, ``nucraw`` or
  ``nuc``, ``identification_rank``, ``coord``, ``country`` or ``country/ocean``, ...)
- ``bold``: BOLD "combined" TSV (``markercode``, ``nucleotides``, ``*_name`` columns)
- ``barcodes``: any other table with a sequence column (e.g. this project's normalised table)
- ``metadata``: a table with ids and/or taxonomy but no sequence column

TSV is read without quote handling (BOLD does not quote, and one stray ``"`` would otherwise
swallow the rest of the file); a cell wholly inside quotes loses them. CSV keeps its quoting,
but a quote left open past the end of its row is reported at its line and the rows after it
are read.
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from engine.errors import InputFormatError
from engine.io.filetypes import DAMAGE_ERRORS, FileType, check_gzip, damage_reason, head_bytes, open_text, sniff

__all__ = ["Table", "read_table", "head_bytes"]

csv.field_size_limit(sys.maxsize)  # a single-line 50 MB sequence is a valid (if odd) cell

SEQUENCE_COLUMNS = ("dna_barcode", "nucleotides", "nucraw", "nuc", "sequence", "nucleotide", "seq", "dna")
ID_COLUMNS = ("processid", "specimen_id", "sampleid", "record_id", "id")
MARKER_COLUMNS = ("marker_code", "markercode", "marker")
# canonical name -> accepted column names, first match wins
TAXONOMY_COLUMNS = {
    "order": ("order", "order_name"),
    "family": ("family", "family_name"),
    "subfamily": ("subfamily", "subfamily_name"),
    "genus": ("genus", "genus_name"),
    "species": ("species", "species_name"),
    "bin_uri": ("bin_uri", "dna_bin", "bin", "uri"),
}
# Collection metadata a record carries downstream (Barcode.metadata): canonical key -> columns.
# BCDM (v5 data packages) names first, then the BOLD combined format's.
METADATA_COLUMNS = {
    "sampleid": ("sampleid",),
    "museumid": ("museumid", "catalognum"),
    "country": ("country", "country/ocean"),
    "province": ("province", "province/state"),
    "coord": ("coord",),
    "collection_date": ("collection_date", "collection_date_start", "collectiondate"),
    "collectors": ("collectors",),
    "identified_by": ("identified_by", "identification_provided_by"),
    "identification_rank": ("identification_rank", "taxon_rank"),
    "marker": MARKER_COLUMNS,
    "accession": ("gb_acs", "insdc_acs", "genbank_accession"),
    # folded into coord and collection_date by row_metadata
    "latitude": ("lat", "latitude"),
    "longitude": ("lon", "longitude"),
    "collection_date_end": ("collection_date_end",),
}
# how far a quoted CSV cell may run over line breaks before its opening quote counts as stray
MAX_QUOTED_LINES = 50


@dataclass
class Table:
    path: Path
    dialect: str  # bioscan-5m | bioscan-1m | bold-bcdm | bold | barcodes | metadata
    header: list[str]
    sequence_column: str | None
    id_column: str | None
    taxonomy_columns: dict[str, str]  # canonical rank -> column in this file
    metadata_columns: dict[str, list[str]] = field(default_factory=dict)  # canonical key -> columns present
    filetype: FileType = FileType("table", "utf-8")
    delimiter: str = "\t"

    @property
    def marker_column(self) -> str | None:
        return next((c for c in MARKER_COLUMNS if c in self.header), None)

    def rows(self) -> Iterator[tuple[int, dict[str, str] | str]]:
        """Yield ``(line_number, row)``; a row that cannot be read is yielded as a message
        naming its line. A truncated gzip ends with a message naming the cut, the rows before
        it kept; a corrupt one raises InputFormatError before any row (filetypes.check_gzip)."""
        check_gzip(self.path, self.filetype)
        width = len(self.header)
        line = 1
        with open_text(self.path, self.filetype) as fh:
            lines = _numbered_lines(fh)
            next(lines, None)  # the header
            cells_of = _tsv_cells if self.delimiter == "\t" else _csv_cells(self.delimiter, width)
            try:
                for line, cells in cells_of(lines):
                    if isinstance(cells, str):
                        yield line, cells
                        continue
                    if not any(c.strip() for c in cells):
                        continue
                    if len(cells) > width and not any(c.strip() for c in cells[width:]):
                        cells = cells[:width]  # trailing empty cells (BOLD's combined TSV has one)
                    if len(cells) != width:
                        yield line, f"line {line}: malformed row: expected {width} fields, found {len(cells)}"
                        continue
                    yield line, {k: v.strip() for k, v in zip(self.header, cells)}
            except DAMAGE_ERRORS as exc:
                yield line + 1, (f"line {line + 1}: {damage_reason(exc)}; the rows before it were read, "
                                 "the rest of the file was not")


def _numbered_lines(fh: io.TextIOBase) -> Iterator[tuple[int, str]]:
    for n, text in enumerate(fh, start=1):
        yield n, text.rstrip("\r\n")


def _unquote(cell: str) -> str:
    if len(cell) >= 2 and cell[0] == '"' and cell[-1] == '"':
        return cell[1:-1].replace('""', '"')
    return cell


def _tsv_cells(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    for n, text in lines:
        cells = text.split("\t")
        yield n, [_unquote(c) for c in cells] if '"' in text else cells


def _csv_cells(delimiter: str, width: int):
    """CSV rows as cell lists; a quoted cell may span lines, a stray quote only costs its own row."""

    def parse(text: str) -> list[str]:
        return next(csv.reader([text], delimiter=delimiter), [])

    def cells(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, list[str] | str]]:
        it = iter(lines)
        pending: list[tuple[int, str]] = []  # lines read ahead while looking for a closing quote
        while True:
            if pending:
                n, text = pending.pop(0)
            else:
                nxt = next(it, None)
                if nxt is None:
                    return
                n, text = nxt
            row = parse(text)
            if text.count('"') % 2 == 0 or len(row) == width:
                yield n, row
                continue
            # an odd quote count: a quoted cell going on over the next line(s), or a stray quote
            joined, taken = text, []
            while len(taken) < MAX_QUOTED_LINES:
                more = pending.pop(0) if pending else next(it, None)
                if more is None:
                    break
                taken.append(more)
                joined += "\n" + more[1]
                if joined.count('"') % 2 == 0:
                    break
            row = parse(joined)
            if joined.count('"') % 2 == 0 and len(row) == width:
                yield n, row
                continue
            yield n, (f"line {n}: unbalanced quote (\"): the quoted cell is never closed; "
                      "this row was not read")
            pending = taken + pending

    return cells


def _delimiter(path: Path, header_line: str) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return ","
    if name.endswith(".tsv") or name.endswith(".tab"):
        return "\t"
    return "\t" if header_line.count("\t") >= header_line.count(",") else ","


def read_table(path: str | Path) -> Table:
    """Open a TSV/CSV table and work out which columns hold what.

    Raises InputFormatError with a specific reason when the file is not a usable table.
    """
    path = Path(path)
    ftype = sniff(path)
    if ftype.kind != "table":
        raise InputFormatError(f"{path.name}: a {_KIND_NAMES[ftype.kind]}, not a table")
    try:
        with open_text(path, ftype) as fh:
            first = fh.readline().rstrip("\r\n")
    except DAMAGE_ERRORS as exc:
        raise InputFormatError(f"{path.name}: {damage_reason(exc)}") from exc
    if not first.strip():
        raise InputFormatError(f"{path.name}: the first line (header) is empty")
    delim = _delimiter(path, first)
    cells = first.split("\t") if delim == "\t" else next(csv.reader([first], delimiter=delim), [])
    header = [_unquote(h.strip()).strip().lower() for h in cells]
    while header and not header[-1]:
        header.pop()  # an unnamed trailing column (BOLD's combined TSV ends its header with a tab)
    if len(header) < 2:
        raise InputFormatError(
            f"{path.name}: a table needs a header row with at least two columns separated by "
            f"{'commas' if delim == ',' else 'tabs'}; found {header[:1]}"
        )
    seq_col = next((c for c in SEQUENCE_COLUMNS if c in header), None)
    id_col = next((c for c in ID_COLUMNS if c in header), None)
    tax_cols = {}
    for rank, names in TAXONOMY_COLUMNS.items():
        col = next((c for c in names if c in header), None)
        if col:
            tax_cols[rank] = col
    meta_cols = {key: [c for c in names if c in header] for key, names in METADATA_COLUMNS.items()}
    meta_cols = {k: v for k, v in meta_cols.items() if v}
    if seq_col is None and id_col is None and not tax_cols:
        raise InputFormatError(
            f"{path.name}: no recognised columns; expected a sequence column "
            f"({', '.join(SEQUENCE_COLUMNS)}) or an id column ({', '.join(ID_COLUMNS)})"
        )
    if seq_col is None:
        dialect = "metadata"
    elif "marker_code" in header:
        dialect = "bold-bcdm"
    elif "markercode" in header:
        dialect = "bold"
    elif seq_col == "dna_barcode":
        dialect = "bioscan-5m"
    elif "order_name" in header:
        dialect = "bioscan-1m"
    else:
        dialect = "barcodes"
    return Table(path, dialect, header, seq_col, id_col, tax_cols, meta_cols, ftype, delim)


def row_metadata(table: Table, row: dict[str, str]) -> dict[str, str]:
    """A row's collection metadata under the canonical keys of METADATA_COLUMNS (empty values left out)."""
    out: dict[str, str] = {}
    for key, cols in table.metadata_columns.items():
        for c in cols:
            value = row[c]
            if value and value not in NULL_CELLS:
                out[key] = value
                break
    lat, lon, end = out.pop("latitude", ""), out.pop("longitude", ""), out.pop("collection_date_end", "")
    if "coord" in out:  # BOLD writes "(19.58,-88.58)" or "[-35.26, 149.06]"
        out["coord"] = ",".join(p.strip() for p in out["coord"].strip("()[] ").split(","))
    elif lat and lon:
        out["coord"] = f"{lat},{lon}"
    if end and out.get("collection_date") and end != out["collection_date"]:
        out["collection_date"] = f"{out['collection_date']}/{end}"  # an ISO 8601 interval
    return out


# what BOLD writes into a cell it has no value for
NULL_CELLS = frozenset({"None", "none", "NULL", "null"})


def cell(row: dict[str, str], column: str | None) -> str:
    """A cell's value, "" for a missing column or BOLD's "None"."""
    if column is None:
        return ""
    value = row.get(column, "")
    return "" if value in NULL_CELLS else value


_KIND_NAMES = {"fasta": "FASTA file", "genbank": "GenBank flat file", "embl": "EMBL flat file",
               "zip": "zip archive"}
