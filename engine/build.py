"""Building and extending reference libraries from labelled barcode files.

A build never writes into its output in place (``library_output``): a new library is made
under a temp name beside OUT and linked into place when complete; ``--add`` extends a copy
of OUT and renames it over OUT at the end. A kill or crash leaves the old library (or none),
never a half-built or 0-byte file that blocks the next run.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from engine.assign import LINEAGE, calibrate
from engine.atomic import atomic_output, check_output_folder
from engine.errors import LibraryError
from engine.io import ReadStats, read_barcodes
from engine.library import ReferenceLibrary, ReferenceRecord
from engine.reference_columns import index_follows
from engine.models.dna_encoder import DnaEncoder
from engine.progress import ProgressCallback
from engine.qc import check_barcode
from engine.records import Barcode, RecordError

BATCH = 4096


@dataclass
class BuildReport:
    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record id, reason)
    read: list[tuple[str, ReadStats]] = field(default_factory=list)  # (file, what reading it gave)


def add_barcodes(
    library: ReferenceLibrary,
    records: Iterable[Barcode | RecordError],
    encoder: DnaEncoder,
    store_sequences: bool = True,
    progress: ProgressCallback = None,
) -> BuildReport:
    """QC, embed and add labelled barcodes; records named at no rank or failing QC are skipped.

    A record identified only to order, family or genus (a BOLD data package has many) is a
    reference at the ranks it has: its empty ranks take no part in the votes (engine.assign).
    """
    report = BuildReport()
    batch: list[tuple[Barcode, str]] = []

    def flush() -> None:
        if not batch:
            return
        emb = encoder.embed([s for _, s in batch])
        report.added += library.add(
            (ReferenceRecord(b.specimen_id, b.taxonomy, e, s if store_sequences else None,
                             source=Path(b.source_file).name) for (b, s), e in zip(batch, emb)),
            encoder,
        )
        if progress:
            progress(report.added, report.added + len(report.skipped), f"added {report.added} references")
        batch.clear()

    for rec in records:
        if isinstance(rec, RecordError):
            report.skipped.append((rec.specimen_id, rec.message))
            continue
        if rec.taxonomy is None or not any(rec.taxonomy.get(r) for r in LINEAGE):
            report.skipped.append((rec.specimen_id, "no order, family, genus or species name"))
            continue
        qc = check_barcode(rec.sequence)
        if not qc.ok:
            report.skipped.append((rec.specimen_id, qc.error or "QC failed"))
            continue
        batch.append((rec, qc.sequence))
        if len(batch) >= BATCH:
            flush()
    flush()
    return report


def calibrate_library(library: ReferenceLibrary, progress: ProgressCallback = None, n_samples: int = 4000) -> dict:
    """(Re)calibrate a library's thresholds and confidences on its own DNA records."""
    refs = library.references("dna")
    seqs = refs.sequences if library.has_sequences else None
    cal = calibrate(refs.matrix, refs.taxonomy, seqs, n_samples=n_samples, progress=progress,
                    kmer_index=refs.kmer_index() if seqs is not None else None)
    library.set_calibration(cal)
    return cal


def check_library_output(out: str | Path, add: bool = False) -> Path:
    """Refuse, before any work, an OUT that cannot be built: a missing folder, an existing file
    without ``add``, or with ``add`` a file that is not a library."""
    out = check_output_folder(out, database=True)
    if add:
        ReferenceLibrary.open(out).close()  # exists and is a library (LibraryError naming it otherwise)
    elif out.exists():
        hint = (" (an empty file, perhaps left by an older version's interrupted build: delete it)"
                if out.is_file() and out.stat().st_size == 0 else "")
        raise LibraryError(f"{out} exists already{hint}; add records to it with --add or choose a new path")
    return out


@contextmanager
def library_output(out: str | Path, add: bool = False, name: str = "") -> Iterator[ReferenceLibrary]:
    """The library to write into: a new one (or with ``add`` a copy of OUT) under a temp name
    beside OUT, put in place at OUT only when the with-block completes (engine.atomic).

    A new library never replaces a file that appeared at OUT meanwhile (two builds of the same
    new library: the second says so); with ``add``, OUT changed by another process meanwhile
    is an error rather than a lost update.
    """
    out = check_library_output(out, add)
    before = out.stat() if add else None
    with index_follows(out) as follow, atomic_output(out, replace=add, database=True) as tmp:
        follow(tmp)
        if add:
            source = ReferenceLibrary.open_writable(out)  # writable: a crashed writer's journal is rolled back
            library = ReferenceLibrary.create_from(source, tmp)
            source.close()
        else:
            library = ReferenceLibrary.create(tmp, name=name or out.stem)
        # the temp file is discarded if anything fails: no journal on disk, no syncs until the end
        library.db.execute("PRAGMA journal_mode = MEMORY")
        library.db.execute("PRAGMA synchronous = OFF")
        try:
            yield library
        finally:
            library.close()
        if before is not None:
            now = os.stat(out)
            if (now.st_mtime_ns, now.st_size, now.st_ino) != (before.st_mtime_ns, before.st_size, before.st_ino):
                raise LibraryError(f"{out} was changed by another process during this build; nothing was "
                                   "replaced: run the command again")


def build_library(
    barcode_files: Iterable[str | Path],
    out: str | Path,
    encoder: DnaEncoder,
    store_sequences: bool = True,
    add: bool = False,
    name: str = "",
    progress: ProgressCallback = None,
    also: Callable[[ReferenceLibrary], object] | None = None,
) -> tuple[ReferenceLibrary, BuildReport]:
    """Create (or, with add=True, extend) a library from labelled barcode files and calibrate it;
    ``also`` runs on it before it is put in place (the CLI adds photo references so).
    Returns the finished library, opened read-only at ``out``."""
    total = BuildReport()
    with library_output(out, add=add, name=name) as library:
        for f in barcode_files:
            stats = ReadStats()
            rep = add_barcodes(library, read_barcodes(f, stats), encoder, store_sequences, progress)
            total.read.append((str(f), stats))
            total.added += rep.added
            total.skipped.extend(rep.skipped)
        calibrate_library(library, progress)
        if also is not None:
            also(library)
    return ReferenceLibrary.open(out), total
