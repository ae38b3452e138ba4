"""Read DNA barcode records from FASTA files and tables, one record at a time.

Every record comes out as a ``Barcode`` or, when that record cannot be read, a
``RecordError``; only a file that is not a barcode file at all raises.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from engine.errors import InputFormatError
from engine.io.tables import head_bytes, read_table, _open_text
from engine.records import Barcode, RecordError, Taxonomy

FASTA_SUFFIXES = (".fasta", ".fa", ".fas", ".fna", ".ffn", ".fsa", ".seq")
TABLE_SUFFIXES = (".tsv", ".csv", ".tab", ".txt")
BARCODE_SUFFIXES = FASTA_SUFFIXES + TABLE_SUFFIXES


def _suffix(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return Path(name).suffix


def detect_barcode_format(path: str | Path) -> str:
    """Return "fasta" or the table dialect of a barcode file; raise InputFormatError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFormatError(f"{path.name}: the file is empty")
    head = head_bytes(path)
    if b"\x00" in head:
        raise InputFormatError(f"{path.name}: binary data, not a FASTA file or table")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith(">"):
        return "fasta"
    if _suffix(path) in FASTA_SUFFIXES:
        raise InputFormatError(
            f"{path.name}: malformed FASTA: the first record must start with '>' "
            f"(found {text[:20]!r})"
        )
    table = read_table(path)
    if table.sequence_column is None:
        raise InputFormatError(
            f"{path.name}: a {table.dialect} table with no sequence column "
            f"(expected one of dna_barcode, nucleotides, sequence)"
        )
    return table.dialect


def read_barcodes(path: str | Path) -> Iterator[Barcode | RecordError]:
    """Yield the barcode records of a FASTA file or a table with a sequence column."""
    path = Path(path)
    fmt = detect_barcode_format(path)
    if fmt == "fasta":
        yield from _read_fasta(path)
    else:
        yield from _read_table_barcodes(path)


def _read_fasta(path: Path) -> Iterator[Barcode | RecordError]:
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    seen: dict[str, int] = {}
    with _open_text(path) as fh:
        try:
            for n, (title, seq) in enumerate(SimpleFastaParser(fh), start=1):
                ident = title.split(None, 1)[0] if title.strip() else ""
                if not ident:
                    yield RecordError(f"{path.stem}#{n}", str(path), f"record {n}: empty FASTA header")
                    continue
                seen[ident] = seen.get(ident, 0) + 1
                if seen[ident] > 1:
                    yield RecordError(
                        f"{ident}#{seen[ident]}", str(path),
                        f"duplicate FASTA id {ident!r} (record {n}); ids must be unique",
                    )
                    continue
                yield Barcode(ident, seq, str(path), extra={"description": title})
        except ValueError as exc:  # Biopython's message names the problem
            yield RecordError(f"{path.stem}#error", str(path), f"malformed FASTA: {exc}")


def _read_table_barcodes(path: Path) -> Iterator[Barcode | RecordError]:
    table = read_table(path)
    seen: set[str] = set()
    for line, row in table.rows():
        if isinstance(row, str):
            yield RecordError(f"{path.stem}:line{line}", str(path), f"malformed row: {row}")
            continue
        ident = row.get(table.id_column, "") if table.id_column else ""
        ident = ident or f"{path.stem}:line{line}"
        if ident in seen:
            yield RecordError(f"{ident}:line{line}", str(path), f"duplicate id {ident!r} at line {line}")
            continue
        seen.add(ident)
        if table.dialect == "bold":
            marker = row.get("markercode", "")
            if marker and marker != "COI-5P":
                yield RecordError(ident, str(path), f"marker {marker} is not COI-5P")
                continue
        tax = Taxonomy(**{rank: row.get(col, "") for rank, col in table.taxonomy_columns.items()})
        has_tax = any(tax.as_dict().values())
        yield Barcode(
            ident,
            row.get(table.sequence_column, ""),
            str(path),
            taxonomy=tax if has_tax else None,
            sampleid=row.get("sampleid", ""),
        )
