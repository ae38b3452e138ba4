"""Read DNA barcode records from FASTA, GenBank/EMBL flat files, tables and zip archives of them.

Every record comes out as a ``Barcode`` or, when that record cannot be read, a
``RecordError``; only a file that is not a barcode file at all raises (InputFormatError, with
the reason). Damage part-way through a file (a truncated or corrupt gzip) ends its records
with one RecordError naming the damage; the records before it are kept. Records of another
marker than COI-5P, and BOLD records without a sequence, are skipped, not errors: a
``ReadStats`` passed in counts them (``summary()`` says "412 COI-5P read; 37 skipped: 21
COI-3P, 16 no sequence"). docs/formats.md lists the formats with an example of each.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from engine.errors import InputFormatError
from engine.io.fasta_headers import ACCEPTED_MARKERS, marker_from_description, parse_fasta_header, strip_id, \
    taxonomy_from_name
from engine.io.filetypes import (ARCHIVE_SUFFIXES, DAMAGE_ERRORS, FASTA_SUFFIXES, FLATFILE_SUFFIXES,
                                 REFUSED_SUFFIXES, TABLE_SUFFIXES, FileType, check_gzip, damage_reason, open_text,
                                 sniff)
from engine.io.tables import Table, cell, read_table, row_metadata
from engine.records import TAXONOMY_FIELDS, Barcode, RecordError, Taxonomy

__all__ = ["read_barcodes", "detect_barcode_format", "ReadStats", "BARCODE_SUFFIXES", "FASTA_SUFFIXES",
           "TABLE_SUFFIXES"]

# every suffix read_barcodes has an answer for (records, or what to give instead)
BARCODE_SUFFIXES = FASTA_SUFFIXES + TABLE_SUFFIXES + FLATFILE_SUFFIXES + ARCHIVE_SUFFIXES + REFUSED_SUFFIXES
_BOLD_DIALECTS = ("bold", "bold-bcdm")
NO_SEQUENCE = "no sequence"
SUMMARY_REASONS = 5  # skip reasons a summary names; the rarer ones are counted together


@dataclass
class ReadStats:
    """What reading one or more files gave: records read, errors, and records skipped by reason
    (a marker code such as "COI-3P", or "no sequence")."""

    read: int = 0
    errors: int = 0
    skipped: Counter = field(default_factory=Counter)
    markers: Counter = field(default_factory=Counter)  # marker of each record read, "" where none is given

    def summary(self) -> str:
        """E.g. "412 COI-5P read; 37 skipped: 21 COI-3P, 16 no sequence"."""
        named = [m for m in self.markers if m]
        out = f"{self.read} {named[0] if len(named) == 1 else 'records'} read"
        if self.skipped:
            reasons = self.skipped.most_common()
            shown = reasons[:SUMMARY_REASONS]
            rest = [(w, n) for w, n in reasons[SUMMARY_REASONS:] if w != NO_SEQUENCE]
            if NO_SEQUENCE in self.skipped and all(w != NO_SEQUENCE for w, _ in shown):
                shown.append((NO_SEQUENCE, self.skipped[NO_SEQUENCE]))
            parts = [f"{n} {why}" for why, n in shown]
            if len(rest) == 1:
                parts.append(f"{rest[0][1]} {rest[0][0]}")
            elif rest:
                parts.append(f"{sum(n for _, n in rest)} of {len(rest)} other markers")
            out += f"; {sum(self.skipped.values())} skipped: " + ", ".join(parts)
        if self.errors:
            out += f"; {self.errors} error{'s' if self.errors != 1 else ''}"
        return out


def detect_barcode_format(path: str | Path) -> str:
    """"fasta", "genbank", "embl", "zip" or the table dialect of a barcode file; raise
    InputFormatError (saying what the file is) otherwise."""
    path = Path(path)
    ftype = sniff(path)
    if ftype.kind != "table":
        return ftype.kind
    return _barcode_table(path).dialect


def _barcode_table(path: Path) -> Table:
    table = read_table(path)
    if table.sequence_column is None:
        raise InputFormatError(
            f"{path.name}: a {table.dialect} table with no sequence column "
            f"(expected one of dna_barcode, nucleotides, nucraw, nuc, sequence)"
        )
    return table


def read_barcodes(path: str | Path, stats: ReadStats | None = None) -> Iterator[Barcode | RecordError]:
    """Yield the barcode records of a FASTA file, GenBank/EMBL flat file, table with a sequence
    column, or zip archive of them; ``stats`` (when given) counts what was read and skipped."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    ftype = sniff(path)
    if ftype.kind == "zip":
        yield from _read_zip(path, stats)
        return
    if ftype.kind == "table":
        table = _barcode_table(path)
        yield from _checked(path, _table_records(table), stats, "", (),
                            skip_unsequenced=table.dialect in _BOLD_DIALECTS)
        return
    check_gzip(path, ftype)
    if ftype.kind == "fasta":
        yield from _checked(path, _fasta_records(path, ftype), stats, "FASTA", (ValueError,))
    else:  # Biopython's flat-file scanner raises IndexError, KeyError, ValueError ... on a damaged record
        yield from _checked(path, _flatfile_records(path, ftype), stats, ftype.kind, (Exception,))


@dataclass
class _Raw:
    """A record as a reader found it, before ids are checked and markers filtered."""

    ident: str
    sequence: str
    where: str  # "record 3", "line 7"
    taxonomy: Taxonomy | None = None
    marker: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    fallback_id: str = ""  # the id of a record that names none (a table row without an id)


def _checked(path: Path, items: Iterable[_Raw | RecordError], stats: ReadStats, what: str,
             parse_errors: tuple[type[BaseException], ...], skip_unsequenced: bool = False,
             ) -> Iterator[Barcode | RecordError]:
    """Records with unique, stripped ids and the COI-5P marker; reading errors (damage, a
    third-party parser's ``parse_errors``) end the stream with one RecordError."""
    seen: dict[str, int] = {}
    last = ""
    it = iter(items)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except (*DAMAGE_ERRORS, *parse_errors) as exc:
            reason = damage_reason(exc) if isinstance(exc, DAMAGE_ERRORS) else f"malformed {what or 'file'}: {exc}"
            after = f"after record {last!r}; the records before it were read" if last else "before the first record"
            stats.errors += 1
            yield RecordError(f"{path.stem}#error", str(path), f"{reason} {after}, the rest of the file was not")
            return
        if isinstance(item, RecordError):
            stats.errors += 1
            yield item
            continue
        marker = item.marker.strip()
        if marker and marker.upper() not in ACCEPTED_MARKERS:
            stats.skipped[marker] += 1
            continue
        marker = marker.upper()
        if skip_unsequenced and not item.sequence.strip():
            stats.skipped[NO_SEQUENCE] += 1
            continue
        ident = strip_id(item.ident) or item.fallback_id
        if not ident:
            stats.errors += 1
            yield RecordError(f"{path.stem}#{item.where.split()[-1]}", str(path), f"{item.where}: empty {what} header")
            continue
        seen[ident] = seen.get(ident, 0) + 1
        if seen[ident] > 1:
            stats.errors += 1
            yield RecordError(f"{ident}#{seen[ident]}", str(path),
                              f"duplicate {what + ' ' if what else ''}id {ident!r} ({item.where}); ids must be unique")
            continue
        if marker:
            item.metadata["marker"] = marker
        last = ident
        stats.read += 1
        stats.markers[marker] += 1
        yield Barcode(ident, item.sequence, str(path), taxonomy=item.taxonomy,
                      sampleid=item.metadata.get("sampleid", ""), extra=item.extra, metadata=item.metadata)


# ------------------------------------------------------------------------------------ FASTA
def _fasta_records(path: Path, ftype: FileType) -> Iterator[_Raw]:
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    with open_text(path, ftype) as fh:
        for n, (title, seq) in enumerate(SimpleFastaParser(fh), start=1):
            h = parse_fasta_header(title)
            yield _Raw(h.id, seq, f"record {n}", h.taxonomy, h.marker,
                       {"accession": h.accession} if h.accession else {}, h.extra)


# ------------------------------------------------------------------------ GenBank / EMBL
def _flatfile_records(path: Path, ftype: FileType) -> Iterator[_Raw]:
    from Bio import SeqIO

    with open_text(path, ftype) as fh:
        for n, rec in enumerate(SeqIO.parse(fh, ftype.kind), start=1):
            yield _from_seqrecord(rec, n)


def _from_seqrecord(rec, n: int) -> _Raw:
    """A GenBank/EMBL record: id = accession.version, taxonomy from the organism and lineage,
    the COI feature's sequence where the record is longer (a mitogenome), its source metadata."""
    ident = rec.id if rec.id and rec.id != "<unknown id>" else rec.name
    tax = _lineage_taxonomy(rec.annotations.get("organism", ""), rec.annotations.get("taxonomy", []))
    try:
        sequence = str(rec.seq)
    except ValueError:  # Bio.Seq.UndefinedSequenceError: a CONTIG record with no bases of its own
        sequence = ""
    marker, coi = "", None
    for feat in rec.features:
        if feat.type not in ("CDS", "gene", "rRNA"):
            continue
        q = feat.qualifiers
        named = marker_from_description(" ".join(q.get("gene", []) + q.get("product", [])))
        if named == "COI":
            marker, coi = "COI", feat
            break
        marker = marker or named
    if not marker:
        marker = marker_from_description(rec.description)
    if coi is not None and sequence and len(coi) < len(sequence) // 2:
        sequence = str(coi.extract(rec.seq))  # the COI gene of a longer record (a mitogenome)
    meta = {"accession": ident, **_source_metadata(rec)}
    return _Raw(ident, sequence, f"record {n}", tax, marker, meta, {"description": rec.description})


def _lineage_taxonomy(organism: str, lineage: list[str]) -> Taxonomy | None:
    """Genus and species from the organism name; order, family and subfamily from the lineage's
    names that tell their rank (a known order, -idae, -inae), not its unranked clades."""
    named = (taxonomy_from_name(organism) or Taxonomy()).as_dict()
    for name in lineage:
        t = taxonomy_from_name(name)
        for rank in ("order", "family", "subfamily"):
            if t is not None and t.get(rank) and not named[rank]:
                named[rank] = t.get(rank)
    return Taxonomy(**named) if any(named.values()) else None


def _source_metadata(rec) -> dict[str, str]:
    source = next((f for f in rec.features if f.type == "source"), None)
    if source is None:
        return {}
    q = {k: v[0] for k, v in source.qualifiers.items() if v}
    out: dict[str, str] = {}
    where = q.get("geo_loc_name") or q.get("country", "")
    if where:
        country, _, province = where.partition(":")
        out["country"] = country.strip()
        if province.strip():
            out["province"] = province.strip()
    if "lat_lon" in q:  # "48.1 N 11.5 E"
        parts = q["lat_lon"].split()
        try:
            lat = float(parts[0]) * (-1 if parts[1].upper() == "S" else 1)
            lon = float(parts[2]) * (-1 if parts[3].upper() == "W" else 1)
            out["coord"] = f"{lat:g},{lon:g}"
        except (IndexError, ValueError):
            pass
    for key, qualifier in (("collection_date", "collection_date"), ("collectors", "collected_by"),
                           ("identified_by", "identified_by"), ("museumid", "specimen_voucher")):
        if q.get(qualifier):
            out[key] = q[qualifier]
    return out


# ----------------------------------------------------------------------------------- tables
# BOLD ranks without a Taxonomy field -> the finest field at or above them (None: above order)
_RANK_FLOOR = {"kingdom": None, "phylum": None, "class": None, "subclass": None, "superorder": None,
               "suborder": "order", "infraorder": "order", "superfamily": "order", "tribe": "subfamily",
               "subtribe": "subfamily", "subgenus": "genus", "subspecies": "species", "variety": "species",
               "form": "species"}
_NAMED_RANKS = [r for r in TAXONOMY_FIELDS if r != "bin_uri"]


def _identified_to(names: dict[str, str], rank: str) -> dict[str, str]:
    """Taxonomy names down to the rank the record is identified to, empty below it."""
    rank = rank.strip().lower()
    keep = rank if rank in _NAMED_RANKS else _RANK_FLOOR.get(rank, "unknown")
    if keep == "unknown":
        return names
    n = 0 if keep is None else _NAMED_RANKS.index(keep) + 1
    return {r: (v if r not in _NAMED_RANKS[n:] else "") for r, v in names.items()}


def _table_records(table: Table) -> Iterator[_Raw | RecordError]:
    path = table.path
    for line, row in table.rows():
        if isinstance(row, str):
            yield RecordError(f"{path.stem}:line{line}", str(path), row)
            continue
        meta = row_metadata(table, row)
        names = {rank: cell(row, col) for rank, col in table.taxonomy_columns.items()}
        if meta.get("identification_rank"):
            names = _identified_to(names, meta["identification_rank"])
        tax = Taxonomy(**names) if any(names.values()) else None
        yield _Raw(cell(row, table.id_column), cell(row, table.sequence_column), f"line {line}", tax,
                   meta.get("marker", ""), meta, fallback_id=f"{path.stem}:line{line}")


# -------------------------------------------------------------------------------------- zip
def _read_zip(path: Path, stats: ReadStats) -> Iterator[Barcode | RecordError]:
    """The barcode files inside a zip archive, each read as if it stood alone."""
    import shutil
    import tempfile
    import zipfile

    readable = FASTA_SUFFIXES + TABLE_SUFFIXES + FLATFILE_SUFFIXES
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, *DAMAGE_ERRORS) as exc:
        raise InputFormatError(f"{path.name}: damaged zip archive ({exc})") from exc
    names = [i for i in infos if not i.is_dir()]
    members = [i for i in names if not Path(i.filename).name.startswith(".") and "__MACOSX/" not in i.filename
               and Path(i.filename.lower().removesuffix(".gz")).suffix in readable]
    if not members:
        shown = ", ".join(Path(i.filename).name for i in names[:5]) + (", ..." if len(names) > 5 else "")
        raise InputFormatError(f"{path.name}: a zip archive with no FASTA file or table inside"
                               + (f" (it holds {shown})" if names else " (it is empty)"))
    with tempfile.TemporaryDirectory(prefix="bioscan-zip-") as tmp, zipfile.ZipFile(path) as zf:
        for n, info in enumerate(members):
            inner = f"{path}/{info.filename}"
            shown = f"{path.name}/{info.filename}"
            dest = Path(tmp) / str(n) / Path(info.filename).name
            dest.parent.mkdir()
            try:
                with zf.open(info) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
            except RuntimeError as exc:  # zipfile: a password-protected member
                yield _member_error(stats, shown, inner, f"cannot extract it ({exc})")
                continue
            except NotImplementedError as exc:  # a compression method zipfile lacks
                yield _member_error(stats, shown, inner, f"cannot extract it ({exc})")
                continue
            except DAMAGE_ERRORS as exc:
                yield _member_error(stats, shown, inner, f"cannot extract it: {damage_reason(exc)}")
                continue
            try:
                for rec in read_barcodes(dest, stats):
                    rec.source_file = inner
                    yield rec
            except InputFormatError as exc:
                if dest.suffix.lower() != ".txt":  # a .txt that is no table is a note (a README): not an input
                    yield _member_error(stats, shown, inner, str(exc).removeprefix(f"{dest.name}: "))
            finally:
                dest.unlink(missing_ok=True)


def _member_error(stats: ReadStats, shown: str, inner: str, reason: str) -> RecordError:
    stats.errors += 1
    return RecordError(Path(inner).name, inner, f"{shown}: {reason}")
