"""Building and extending reference libraries from labelled barcode files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from engine.assign import calibrate
from engine.io import read_barcodes
from engine.library import ReferenceLibrary, ReferenceRecord
from engine.models.dna_encoder import DnaEncoder
from engine.progress import ProgressCallback
from engine.qc import check_barcode
from engine.records import Barcode, RecordError

BATCH = 4096


@dataclass
class BuildReport:
    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record id, reason)


def add_barcodes(
    library: ReferenceLibrary,
    records: Iterable[Barcode | RecordError],
    encoder: DnaEncoder,
    store_sequences: bool = True,
    progress: ProgressCallback = None,
) -> BuildReport:
    """QC, embed and add labelled barcodes; records without a species or failing QC are skipped."""
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
        if rec.taxonomy is None or not rec.taxonomy.species:
            report.skipped.append((rec.specimen_id, "no species name"))
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


def build_library(
    barcode_files: Iterable[str | Path],
    out: str | Path,
    encoder: DnaEncoder,
    store_sequences: bool = True,
    add: bool = False,
    name: str = "",
    progress: ProgressCallback = None,
) -> tuple[ReferenceLibrary, BuildReport]:
    """Create (or, with add=True, extend) a library from labelled barcode files and calibrate it."""
    library = ReferenceLibrary.open_writable(out) if add else ReferenceLibrary.create(out, name=name)
    total = BuildReport()
    for f in barcode_files:
        rep = add_barcodes(library, read_barcodes(f), encoder, store_sequences, progress)
        total.added += rep.added
        total.skipped.extend(rep.skipped)
    calibrate_library(library, progress)
    return library, total
