"""Finding import inputs in folders and the rules that pair photos with specimens.

The rules are documented in docs/project-database.md ("Pairing"); keep the two in step.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from engine.io.barcodes import BARCODE_SUFFIXES, TABLE_SUFFIXES
from engine.io.images import PHOTO_SUFFIXES

# Where a photo name may be cut to find the specimen id it starts with.
_SEPARATORS = re.compile(r"[_\-\s.]")
NOT_AN_INPUT = "not a photo, barcode file or table"  # the everyday reason (notes.docx): not worth a note


@dataclass
class ScannedFile:
    path: Path  # absolute
    kind: str  # photo | barcodes | metadata
    error: str = ""  # set when the file cannot even be classified (it still becomes an error item)


@dataclass
class ScanResult:
    metadata: list[ScannedFile] = field(default_factory=list)
    barcodes: list[ScannedFile] = field(default_factory=list)
    photos: list[ScannedFile] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)

    @property
    def files(self) -> list[ScannedFile]:
        """In processing order: metadata first (it names specimens), then barcodes, then photos."""
        return self.metadata + self.barcodes + self.photos


def _suffix(name: str) -> str:
    return Path(name.lower().removesuffix(".gz")).suffix


def classify(path: Path) -> ScannedFile | None:
    """What an input file is, or None when it is not an input (ignored).

    Barcode files the reader refuses (FASTQ, Excel, traces) are classified as barcode files so
    that their error row says what to give instead; a table is a barcode file or metadata by its
    columns, and a FASTA saved as ``.txt`` or ``.tsv`` is a barcode file.
    """
    from engine.errors import InputFormatError
    from engine.io import read_table, sniff

    suffix = _suffix(path.name)
    if suffix in PHOTO_SUFFIXES and not path.name.lower().endswith(".gz"):
        return ScannedFile(path, "photo")
    if suffix in BARCODE_SUFFIXES and suffix not in TABLE_SUFFIXES:
        return ScannedFile(path, "barcodes")
    if suffix not in TABLE_SUFFIXES:
        return None
    try:
        if sniff(path).kind != "table":
            return ScannedFile(path, "barcodes")
        table = read_table(path)
    except InputFormatError as exc:
        if suffix == ".txt":  # a .txt is more often a note than a table: ignore it
            return None
        return ScannedFile(path, "barcodes", error=str(exc))
    except OSError as exc:
        return ScannedFile(path, "barcodes", error=f"cannot read file: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - a damaged file is that file's error row, not the scan's end
        return ScannedFile(path, "barcodes", error=f"cannot read file: {type(exc).__name__}: {exc}")
    return ScannedFile(path, "metadata" if table.dialect == "metadata" else "barcodes")


def scan_folders(paths: Sequence[str | Path]) -> ScanResult:
    """Every input file under the given folders (and files), recursively, sorted; hidden ones skipped."""
    result = ScanResult()
    seen: set[Path] = set()

    def add(p: Path) -> None:
        p = Path(os.path.abspath(p))
        if p in seen:
            return
        seen.add(p)
        why = _not_a_regular_file(p)
        if why:
            result.ignored.append((p, why))
            return
        item = classify(p)
        if item is None:
            result.ignored.append((p, NOT_AN_INPUT))
        else:
            getattr(result, item.kind if item.kind != "photo" else "photos").append(item)

    for root in map(Path, paths):
        if root.is_dir():
            walk_errors: list[OSError] = []
            for dirpath, dirnames, filenames in os.walk(root, onerror=walk_errors.append):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        add(Path(dirpath) / name)
            for err in walk_errors:
                result.ignored.append((Path(err.filename or root), f"cannot read folder: {err.strerror or err}"))
        elif root.exists() or root.is_symlink():
            add(root)
        else:
            result.ignored.append((root, "no such file or folder"))
    for lst in (result.metadata, result.barcodes, result.photos):
        lst.sort(key=lambda f: str(f.path))
    return result


def _not_a_regular_file(path: Path) -> str:
    """Why a path is skipped without being opened ("" for a regular file): reading a FIFO, a
    device or a socket would block forever or never end."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:  # a broken link or a vanished file: an error row says so (engine.project.importer)
        return ""
    if stat.S_ISREG(mode):
        return ""
    what = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"skipped: {what}, not a file"


def photo_key(stem: str, folder: str, is_known: Callable[[str], bool]) -> tuple[str, bool]:
    """The specimen key of a photo and whether it paired with a known specimen.

    (a) the stem, (b) the parent folder's name, (c) the longest prefix of the stem cut before
    a separator (``_ - space .``), each if known; else (d) the stem itself.
    """
    if is_known(stem):
        return stem, True
    if folder and is_known(folder):
        return folder, True
    cuts = [m.start() for m in _SEPARATORS.finditer(stem)]
    for cut in reversed(cuts):
        prefix = stem[:cut]
        if prefix and is_known(prefix):
            return prefix, True
    return stem, False
