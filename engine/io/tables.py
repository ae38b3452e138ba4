"""Delimited tables (TSV/CSV, optionally gzipped) with column-name normalisation.

Recognised dialects:
- ``bioscan-5m``: ``processid, sampleid, dna_barcode, order, family, ..., dna_bin``
- ``bioscan-1m``: BarcodeBERT / BIOSCAN-1M, ``nucleotides, order_name ... species_name, bin_uri``
- ``bold``: BOLD "combined" TSV (``markercode``, ``nucleotides``, ``*_name`` columns)
- ``barcodes``: any other table with a sequence column (e.g. this project's normalised table)
- ``metadata``: a table with ids and/or taxonomy but no sequence column
"""
from __future__ import annotations

import csv
import gzip
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.errors import InputFormatError

csv.field_size_limit(sys.maxsize)  # a single-line 50 MB sequence is a valid (if odd) cell

SEQUENCE_COLUMNS = ("dna_barcode", "nucleotides", "sequence", "nucleotide", "seq", "dna")
ID_COLUMNS = ("processid", "specimen_id", "sampleid", "record_id", "id")
# canonical name -> accepted column names, first match wins
TAXONOMY_COLUMNS = {
    "order": ("order", "order_name"),
    "family": ("family", "family_name"),
    "subfamily": ("subfamily", "subfamily_name"),
    "genus": ("genus", "genus_name"),
    "species": ("species", "species_name"),
    "bin_uri": ("bin_uri", "dna_bin", "bin", "uri"),
}


@dataclass
class Table:
    path: Path
    dialect: str  # bioscan-5m | bioscan-1m | bold | barcodes | metadata
    header: list[str]
    sequence_column: str | None
    id_column: str | None
    taxonomy_columns: dict[str, str]  # canonical rank -> column in this file

    def rows(self) -> Iterator[tuple[int, dict[str, str] | str]]:
        """Yield ``(line_number, row)``; a malformed row is yielded as an error string."""
        with _open_text(self.path) as fh:
            reader = csv.reader(fh, delimiter=_delimiter(self.path, self.header_line(fh)))
            next(reader, None)
            width = len(self.header)
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != width:
                    yield line, f"line {line}: expected {width} fields, found {len(row)}"
                    continue
                yield line, {k: v.strip() for k, v in zip(self.header, row)}

    @staticmethod
    def header_line(fh: io.TextIOBase) -> str:
        pos = fh.tell()
        line = fh.readline()
        fh.seek(pos)
        return line


def _open_text(path: Path) -> io.TextIOBase:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8-sig", errors="replace", newline="")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def _delimiter(path: Path, header_line: str) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return ","
    if name.endswith(".tsv") or name.endswith(".tab"):
        return "\t"
    return "\t" if header_line.count("\t") >= header_line.count(",") else ","


def head_bytes(path: Path, size: int = 4096) -> bytes:
    """The first bytes of a file, decompressed when it is gzipped."""
    with path.open("rb") as fh:
        head = fh.read(size)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(size)
        except (OSError, EOFError) as exc:
            raise InputFormatError(f"{path.name}: damaged gzip file ({exc})") from exc
    return head


def read_table(path: str | Path) -> Table:
    """Open a TSV/CSV table and work out which columns hold what.

    Raises InputFormatError with a specific reason when the file is not a usable table.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFormatError(f"{path.name}: the file is empty")
    if b"\x00" in head_bytes(path):
        raise InputFormatError(f"{path.name}: binary data, not a text table")
    with _open_text(path) as fh:
        first = fh.readline()
    if not first.strip():
        raise InputFormatError(f"{path.name}: the first line (header) is empty")
    delim = _delimiter(path, first)
    header = [h.strip().lower() for h in next(csv.reader([first], delimiter=delim))]
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
    if seq_col is None and id_col is None and not tax_cols:
        raise InputFormatError(
            f"{path.name}: no recognised columns; expected a sequence column "
            f"({', '.join(SEQUENCE_COLUMNS)}) or an id column ({', '.join(ID_COLUMNS)})"
        )
    if seq_col is None:
        dialect = "metadata"
    elif "markercode" in header:
        dialect = "bold"
    elif seq_col == "dna_barcode":
        dialect = "bioscan-5m"
    elif "order_name" in header:
        dialect = "bioscan-1m"
    else:
        dialect = "barcodes"
    return Table(path, dialect, header, seq_col, id_col, tax_cols)
