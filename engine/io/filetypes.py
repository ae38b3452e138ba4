"""What a barcode file is, decided from its first bytes: the one place file types are checked.

``sniff`` returns the kind of a readable file (FASTA, table, GenBank or EMBL flat file, zip
archive), whether it is gzipped and its text encoding (UTF-8, or UTF-16/UTF-32 found by
their byte-order mark or NUL pattern), or raises InputFormatError saying what the file is
instead (FASTQ reads, an Excel workbook, a sequencer trace, binary data, ...) and what to
give instead. ``open_text`` opens a file as sniffed. ``DAMAGE_ERRORS`` are the exceptions
reading a damaged file raises part-way through (a truncated or bit-flipped gzip); readers
turn them into a RecordError with ``damage_reason`` and keep what came before.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputFormatError

FASTA_SUFFIXES = (".fasta", ".fa", ".fas", ".fna", ".ffn", ".fsa", ".seq")
TABLE_SUFFIXES = (".tsv", ".csv", ".tab", ".txt")
FLATFILE_SUFFIXES = (".gb", ".gbk", ".gbff", ".genbank", ".embl")
ARCHIVE_SUFFIXES = (".zip",)
# read only to say what to give instead (FASTQ reads, spreadsheets, sequencer traces)
REFUSED_SUFFIXES = (".fastq", ".fq", ".xlsx", ".xls", ".ods", ".ab1")

HEAD_SIZE = 8192
_GZIP_MAGIC = b"\x1f\x8b"

# Exceptions a damaged file raises part-way through reading: zlib.error / EOFError /
# gzip.BadGzipFile (an OSError) from gzip, csv.Error, UnicodeError, zipfile.BadZipFile.
DAMAGE_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error, EOFError, OSError, UnicodeError, csv.Error, zipfile.BadZipFile,
)


@dataclass(frozen=True)
class FileType:
    kind: str  # fasta | table | genbank | embl | zip
    encoding: str  # a Python codec name for open_text
    gzipped: bool = False


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Bytes that are not UTF-8 decoded as Windows-1252 (a CSV saved by Excel on Windows),
    so "Müller" stays "Müller" instead of becoming U+FFFD."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("cp1252", errors="replace"), exc.end


codecs.register_error("bioscan-cp1252", _cp1252_fallback)


def open_text(path: Path, ftype: FileType) -> io.TextIOWrapper:
    """The file as text, decompressed when gzipped, universal newlines left to the reader."""
    raw = path.open("rb")
    stream = gzip.GzipFile(fileobj=raw) if ftype.gzipped else raw
    errors = "bioscan-cp1252" if ftype.encoding.startswith("utf-8") else "replace"
    return io.TextIOWrapper(stream, encoding=ftype.encoding, errors=errors, newline="")


def check_gzip(path: Path, ftype: FileType) -> None:
    """Refuse a gzip file whose data is corrupt (InputFormatError), before any record is read.

    A flipped bit in deflate data is found only where decoding fails or at the checksum after
    the last byte, and what came out before it may already be wrong (a test file with one bit
    flipped gave 171 records of which 60 were intact), so no record of such a file is kept. A
    truncated file passes: what comes out before the cut is right, and the reader ends there.
    """
    if not ftype.gzipped:
        return
    try:
        with gzip.open(path, "rb") as gz:
            while gz.read(1 << 20):
                pass
    except EOFError:
        return  # truncated: the reader keeps the records before the cut and reports it
    except (zlib.error, OSError) as exc:
        raise InputFormatError(
            f"{path.name}: {damage_reason(exc)}: the file is corrupt, so none of its records can be "
            "trusted; get it again") from exc


def damage_reason(exc: BaseException) -> str:
    """What a DAMAGE_ERRORS exception says about the file, in a user's words."""
    if isinstance(exc, EOFError):
        return f"the gzip file is truncated ({exc})"
    if isinstance(exc, zlib.error):
        return f"damaged gzip data ({exc})"
    if isinstance(exc, gzip.BadGzipFile):
        return f"damaged gzip file ({exc})"
    if isinstance(exc, zipfile.BadZipFile):
        return f"damaged zip archive ({exc})"
    if isinstance(exc, UnicodeError):
        return f"text that cannot be decoded ({exc})"
    if isinstance(exc, csv.Error):
        return f"unreadable row ({exc})"
    if isinstance(exc, OSError):
        return f"read error ({exc.strerror or exc})"
    return str(exc)


def _gunzip_head(data: bytes, name: str) -> bytes:
    """The first bytes of gzipped data, as far as they decompress: damage later in the file is
    the reader's to report (with the records before it kept), not a reason to refuse the file."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    for start in range(0, len(data), 1024):
        try:
            out += d.decompress(data[start:start + 1024], HEAD_SIZE - len(out))
        except zlib.error as exc:
            if not out:
                raise InputFormatError(f"{name}: damaged gzip file ({exc})") from exc
            break
        if len(out) >= HEAD_SIZE or d.eof:
            break
    return out


def _head(path: Path) -> tuple[bytes, bool]:
    """The first HEAD_SIZE bytes of the file's content, and whether it is gzipped."""
    with path.open("rb") as fh:
        raw = fh.read(HEAD_SIZE)
        if raw[:2] != _GZIP_MAGIC:
            return raw, False
        raw += fh.read(256 * 1024)  # compressed input for HEAD_SIZE bytes of output, generously
    return _gunzip_head(raw, path.name), True


def head_bytes(path: Path, size: int = HEAD_SIZE) -> bytes:
    """The first bytes of a file, decompressed when it is gzipped."""
    return _head(path)[0][:size]


def _utf_encoding(head: bytes) -> str | None:
    """UTF-16/32 by byte-order mark, or by the NUL bytes ASCII text has in them; None otherwise."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(bom):
            return codec
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    sample = head[:1024]
    if len(sample) < 8 or b"\x00" not in sample:
        return None
    n4 = len(sample) // 4 * 4
    lanes = [sample[i:n4:4] for i in range(4)]
    nul = [lane.count(0) / len(lane) for lane in lanes]
    if nul[1] > 0.9 and nul[2] > 0.9 and nul[3] > 0.9 and nul[0] < 0.1:
        return "utf-32-le"
    if nul[0] > 0.9 and nul[1] > 0.9 and nul[2] > 0.9 and nul[3] < 0.1:
        return "utf-32-be"
    even, odd = sample[0::2], sample[1::2]
    nul_even, nul_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if nul_odd > 0.9 and nul_even < 0.1:
        return "utf-16-le"
    if nul_even > 0.9 and nul_odd < 0.1:
        return "utf-16-be"
    return None


# (magic bytes, what the file is and what to give instead)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel workbook (.xls) or other Office file: save it as TSV or CSV"),
    (b"%PDF", "a PDF document, not a barcode file"),
    (b"ABIF", "an ABI sequencer trace: give the basecalled consensus barcodes as FASTA"),
    (b".scf", "an SCF sequencer trace: give the basecalled consensus barcodes as FASTA"),
    (b"SQLite format 3\x00", "an SQLite database (a project or reference library?), not a barcode file"),
    (b"BZh", "bzip2-compressed: decompress it first (gzip, .gz, is read as it is)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (gzip, .gz, is read as it is)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: extract it first (zip archives are read as they are)"),
    (b"Rar!", "a RAR archive: extract it first (zip archives are read as they are)"),
    (b"\x89PNG", "a PNG image, not a barcode file"),
    (b"\xff\xd8\xff", "a JPEG image, not a barcode file"),
    (b"GIF8", "a GIF image, not a barcode file"),
    (b"II*\x00", "a TIFF image, not a barcode file"),
    (b"MM\x00*", "a TIFF image, not a barcode file"),
)


def _zip_kind(path: Path) -> None:
    """Refuse office documents (they are zip archives too); a plain zip archive is read."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            mimetype = zf.read("mimetype").decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, *DAMAGE_ERRORS, RuntimeError) as exc:
        raise InputFormatError(f"{path.name}: damaged zip archive ({exc})") from exc
    if any(n.startswith("xl/") for n in names):
        raise InputFormatError(f"{path.name}: an Excel workbook: save it as TSV or CSV")
    if "opendocument.spreadsheet" in mimetype:
        raise InputFormatError(f"{path.name}: an OpenDocument spreadsheet: save it as TSV or CSV")
    if any(n.startswith("word/") for n in names) or "opendocument.text" in mimetype:
        raise InputFormatError(f"{path.name}: a word-processor document, not a barcode file")


def _is_fastq(text: str) -> bool:
    lines = text.lstrip().splitlines()
    return len(lines) >= 3 and lines[0].startswith("@") and lines[2].startswith("+")


def sniff(path: str | Path) -> FileType:
    """The kind, compression and encoding of a barcode file; InputFormatError when it is none."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputFormatError(f"{path.name}: the file is empty")
    try:
        head, gzipped = _head(path)
    except OSError as exc:
        raise InputFormatError(f"{path.name}: cannot read file: {exc.strerror or exc}") from exc
    if not head:
        raise InputFormatError(f"{path.name}: the file is empty (a gzip of nothing)")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        if gzipped:
            raise InputFormatError(f"{path.name}: a gzipped zip archive: unzip it first")
        _zip_kind(path)
        return FileType("zip", "", False)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise InputFormatError(f"{path.name}: {what}")
    encoding = _utf_encoding(head) or "utf-8"
    if encoding == "utf-8" and b"\x00" in head:
        raise InputFormatError(f"{path.name}: binary data, not a FASTA file or table")
    text = head.decode(encoding, errors="replace").lstrip("\ufeff \t\r\n")
    control = sum(1 for c in text if c < " " and c not in "\t\r\n")
    if control > len(text) // 100 + 1:
        raise InputFormatError(f"{path.name}: binary data, not a FASTA file or table")
    if text.startswith(">"):
        return FileType("fasta", encoding, gzipped)
    if _is_fastq(text):
        raise InputFormatError(f"{path.name}: FASTQ reads: give the consensus barcodes as FASTA")
    if text.startswith("LOCUS "):
        return FileType("genbank", encoding, gzipped)
    if text.startswith("ID   "):
        return FileType("embl", encoding, gzipped)
    lowered = text[:100].lower()
    if lowered.startswith(("<!doctype html", "<html")):
        raise InputFormatError(f"{path.name}: an HTML page (a download that failed?), not a barcode file")
    if lowered.startswith("<?xml"):
        raise InputFormatError(f"{path.name}: an XML document, not a barcode file")
    suffix = Path(path.name.lower().removesuffix(".gz")).suffix
    if suffix in (".fastq", ".fq"):
        raise InputFormatError(f"{path.name}: FASTQ reads: give the consensus barcodes as FASTA")
    if suffix in FASTA_SUFFIXES:
        raise InputFormatError(
            f"{path.name}: malformed FASTA: the first record must start with '>' (found {text[:20]!r})"
        )
    if suffix in FLATFILE_SUFFIXES:
        raise InputFormatError(
            f"{path.name}: malformed {'EMBL' if suffix == '.embl' else 'GenBank'} file: it must start with "
            f"{'an ID' if suffix == '.embl' else 'a LOCUS'} line (found {text[:20]!r})"
        )
    return FileType("table", encoding, gzipped)
