"""Building and extending reference libraries from labelled barcode files.

A build never writes into its output in place. ``build_library`` commits batches of
references into a work file beside OUT (engine.build_work: ``OUT.building``, with its record of
progress in the same transactions) and renames it over OUT only when complete (with ``--add``
the work file starts as a copy of OUT, which stays as it was until then). A kill, a crash or
Ctrl-C leaves the old library (or none) and the work file: the same command run again resumes
it, embedding only what was not committed. ``library_output`` (photo-only builds) writes a temp
file that is discarded on failure.
"""
from __future__ import annotations

import os
import re
import sqlite3
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from engine.assign import LINEAGE, calibrate
from engine.atomic import atomic_output, check_output_folder, disk_full, place_file, write_error_message
from engine.build_work import (
    InputProgress, WorkFile, discard_work, make_plan, open_work, output_identity, rows_read, stats_from_state,
    stats_state,
)
from engine.errors import BioscanError, LibraryError
from engine.io import ReadStats, read_barcodes
from engine.library import ReferenceLibrary, ReferenceRecord, model_identity
from engine.reference_columns import index_follows
from engine.models.dna_encoder import DnaEncoder
from engine.progress import ProgressCallback, report as report_progress
from engine.qc import check_barcode
from engine.records import Barcode, RecordError

BATCH = 4096


SKIPPED_KEPT = 100  # skipped records kept with their reason; the rest are counted by reason only
REASON_KINDS = 50  # kinds of reason counted apart; records skipped for further kinds are counted together


def reason_kind(reason: str) -> str:
    """A skip reason without its particulars (quoted ids, numbers), so that the kinds stay few."""
    return re.sub(r"\d[\d,.]*", "…", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason))


@dataclass
class BuildReport:
    """What a build added and skipped, in bounded memory however many records are skipped: the
    first ``SKIPPED_KEPT`` skipped records with their reasons, and every one counted by kind of reason."""

    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record id, reason): the first SKIPPED_KEPT
    skipped_by_reason: Counter = field(default_factory=Counter)  # reason_kind -> records skipped
    read: list[tuple[str, ReadStats]] = field(default_factory=list)  # (file, what reading it gave)
    resumed: int = 0  # of ``added``: committed by an interrupted run of the same build, not embedded again

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    def skip(self, record_id: str, reason: str) -> None:
        if len(self.skipped) < SKIPPED_KEPT:
            self.skipped.append((record_id, reason))
        kind = reason_kind(reason)
        if kind not in self.skipped_by_reason and len(self.skipped_by_reason) >= REASON_KINDS:
            kind = "other reasons"
        self.skipped_by_reason[kind] += 1

    def state(self) -> dict:
        """What a work file keeps of the report (engine.build_work)."""
        return {"added": self.added, "skipped": self.skipped, "by_reason": dict(self.skipped_by_reason)}

    @classmethod
    def from_state(cls, state: dict) -> "BuildReport":
        return cls(added=state["added"], skipped=[tuple(s) for s in state["skipped"]],
                   skipped_by_reason=Counter(state["by_reason"]), resumed=state["added"])


def _cleaned(rec: Barcode | RecordError, report: BuildReport) -> str | None:
    """The QC-cleaned sequence of a record to add; None (and the reason in ``report``) for one that
    failed to read, is named at no rank, or fails QC."""
    if isinstance(rec, RecordError):
        report.skip(rec.specimen_id, rec.message)
        return None
    if rec.taxonomy is None or not any(rec.taxonomy.get(r) for r in LINEAGE):
        report.skip(rec.specimen_id, "no order, family, genus or species name")
        return None
    qc = check_barcode(rec.sequence)
    if not qc.ok:
        report.skip(rec.specimen_id, qc.error or "QC failed")
        return None
    return qc.sequence


Checkpoint = Callable[[int, bool], tuple["dict[str, str] | None", "Callable[[], None] | None"]]


def _add_in_batches(
    library: ReferenceLibrary,
    records: Iterable[Barcode | RecordError],
    encoder: DnaEncoder,
    store_sequences: bool,
    report: BuildReport,
    batch_size: int = BATCH,
    skip: int = 0,
    checkpoint: Checkpoint | None = None,
) -> None:
    """QC, embed and add records, ``batch_size`` QC-passed ones a transaction. The first ``skip``
    records (committed by an interrupted run) are passed over without QC or embedding: the
    batches after them are the very ones an uninterrupted run forms (a batch's padding takes
    part in the arithmetic). ``checkpoint(records consumed, last)`` is called as each batch is
    complete (with ``last``, also after the last record when no batch is left) and gives the
    meta values to store in its transaction and what to run once it is committed: both describe
    the input up to that batch, not as far as reading has gone on since.

    A batch is embedded on a worker thread while this one reads and QC-checks the next batch and
    commits the one before (ONNX Runtime releases the GIL; SQLite stays on this thread), so the
    Python work overlaps the encoder's instead of leaving a core idle."""
    from concurrent.futures import ThreadPoolExecutor

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bioscan-embed")

    def embedding(batch: list[tuple[Barcode, str]], consumed: int, last: bool) -> tuple:
        future = worker.submit(encoder.embed, [s for _, s in batch])
        report.added += len(batch)  # before the checkpoint: its meta holds the report with this batch
        return batch, future, checkpoint(consumed, last) if checkpoint else (None, None)

    def commit(embedded: tuple) -> None:
        batch, future, (meta, after) = embedded
        emb = future.result()
        library.add((ReferenceRecord(b.specimen_id, b.taxonomy, e, s if store_sequences else None,
                                     source=Path(b.source_file).name) for (b, s), e in zip(batch, emb)),
                    encoder, meta=meta)
        if after:
            after()

    batch: list[tuple[Barcode, str]] = []
    pending = None  # the batch being embedded, committed once the next one is full (or the input ends)
    n = 0
    try:
        for n, rec in enumerate(records, start=1):
            if n <= skip:
                continue
            sequence = _cleaned(rec, report)
            if sequence is None:
                continue
            batch.append((rec, sequence))
            if len(batch) >= batch_size:
                started, batch = embedding(batch, n, False), []
                if pending is not None:
                    commit(pending)
                pending = started
        if pending is not None:
            commit(pending)
        if batch:
            commit(embedding(batch, n, True))
        elif checkpoint:  # no batch left: the end of the input recorded on its own
            meta, after = checkpoint(n, True)
            if meta:
                library.set_meta(meta)
            if after:
                after()
    finally:  # an error or Ctrl-C: what is being embedded is not waited for
        worker.shutdown(wait=False, cancel_futures=True)


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

    def checkpoint(consumed: int, last: bool) -> tuple[None, Callable[[], None]]:
        added, seen = report.added, report.added + report.n_skipped
        return None, lambda: report_progress(progress, added, seen, f"added {added} references")

    _add_in_batches(library, records, encoder, store_sequences, report, checkpoint=checkpoint)
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


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a build; the message says what was committed and how to resume."""


def _build_settings(encoder: DnaEncoder, store_sequences: bool, add: bool, name: str, batch_size: int) -> dict:
    """The settings that decide what a build writes (a resumed build must have the same)."""
    return {"model": model_identity(encoder), "store_sequences": store_sequences, "add": add, "name": name,
            "batch_size": batch_size}


def _read_inputs(work: WorkFile, files: list[Path], encoder: DnaEncoder, store_sequences: bool, batch_size: int,
                 progress: ProgressCallback) -> BuildReport:
    """Every input's records not yet committed, QC-checked, embedded and committed a batch at a time
    with the work file's record of progress."""
    report = BuildReport.from_state(work.report) if work.report else BuildReport()
    total, message = work.rows_total(), "reading and embedding barcodes"
    committed = work.rows_committed()
    # a resumed build's rate is measured from its first new batch, not over passing the committed records by
    report_progress(progress, committed, max(total, committed),
                    "resuming: passing over the records committed before" if committed else message)
    for n, path in enumerate(files):
        done = work.inputs[n]
        if done.stats is not None:  # read to its end by an interrupted run
            report.read.append((str(path), stats_from_state(done.stats)))
            continue
        stats = ReadStats()

        def state(items: int, last: bool) -> InputProgress:
            return InputProgress(items, rows_read(stats), stats_state(stats) if last else None)

        def checkpoint(items: int, last: bool) -> tuple[dict[str, str], Callable[[], None]]:
            at = state(items, last)

            def committed() -> None:
                work.committed(n, at)
                rows = work.rows_committed()
                report_progress(progress, rows, max(total, rows), message)
            return work.commit_meta(n, at, report.state()), committed

        _add_in_batches(work.library, read_barcodes(path, stats), encoder, store_sequences, report, batch_size,
                        skip=done.items, checkpoint=checkpoint)
        report.read.append((str(path), stats))
    return report


def _interrupted(work: WorkFile) -> str:
    committed, total = work.rows_committed(), work.rows_total()
    of = f" of {max(total, committed):,}" if total else ""
    return (f"interrupted: {committed:,}{of} records committed (in {work.path.name}); "
            "run the same command again to resume")


def _kept(exc: BaseException, work: WorkFile, out: Path) -> BaseException:
    """What to raise for ``exc`` stopping a build: the work file stays, and the message says so
    (Ctrl-C: BuildInterrupted; a full disk or a BioscanError: the same, with the hint to resume)."""
    if isinstance(exc, KeyboardInterrupt):
        return BuildInterrupted(_interrupted(work))
    kept = f"the {work.rows_committed():,} records committed so far are kept in {work.path.name}"
    if isinstance(exc, (OSError, sqlite3.OperationalError)) and disk_full(exc):
        return BioscanError(f"{write_error_message(out, exc)}; {kept}: free some space and run the same command "
                            "again to resume")
    if isinstance(exc, BioscanError) and work.rows_committed():
        return type(exc)(f"{exc} ({kept}: the same command run again resumes; with --restart it starts again)")
    return exc  # Cancelled, an unexpected error: the work file stays all the same


def _place(work: WorkFile, out: Path, add: bool, plan_out: dict | None) -> None:
    """Put the finished work file at ``out``: over the library it extends, unless another process
    changed that meanwhile; for a new library, unless one appeared there meanwhile."""
    if add and output_identity(out) != plan_out:
        raise LibraryError(f"{out} was changed by another process during this build; nothing was replaced: "
                           "run the command with --restart to build on its new state")
    work.finish()
    try:
        place_file(work.path, out, replace=add)
    except BioscanError:
        work.path.unlink(missing_ok=True)  # a new library appeared at OUT: this build can never be placed
        raise


def build_library(
    barcode_files: Iterable[str | Path],
    out: str | Path,
    encoder: DnaEncoder,
    store_sequences: bool = True,
    add: bool = False,
    name: str = "",
    progress: ProgressCallback = None,
    also: Callable[[ReferenceLibrary], object] | None = None,
    restart: bool = False,
    batch_size: int = BATCH,
) -> tuple[ReferenceLibrary, BuildReport]:
    """Create (or, with add=True, extend) a library from labelled barcode files and calibrate it;
    ``also`` runs on it before it is put in place (the CLI adds photo references so).
    Returns the finished library, opened read-only at ``out``.

    Resumes the work an interrupted run of the same build left (engine.build_work), embedding only
    what it had not committed; ``restart`` discards that work first. Ctrl-C raises BuildInterrupted
    (a KeyboardInterrupt) saying what was committed, and leaves the work file to resume."""
    if batch_size < 1:
        raise BioscanError(f"a batch size of {batch_size}: give at least 1")
    out = check_library_output(out, add)
    files = [Path(f) for f in barcode_files]
    if restart:
        discard_work(out)
    source = ReferenceLibrary.open_writable(out) if add else None  # writable: a crashed writer's journal is rolled back
    try:
        plan = make_plan(files, _build_settings(encoder, store_sequences, add, name, batch_size), out if add else None)
        work = open_work(out, plan, (lambda tmp: ReferenceLibrary.create_from(source, tmp)) if add
                         else (lambda tmp: ReferenceLibrary.create(tmp, name=name or out.stem)))
    finally:
        if source is not None:
            source.close()
    with index_follows(out) as follow:
        follow(work.path)
        try:
            report = _read_inputs(work, files, encoder, store_sequences, batch_size, progress)
            calibrate_library(work.library, progress)
            if also is not None:
                also(work.library)
            # once, on the final state (engine.ann_index); an extended library keeps the graphs of its unchanged shards
            work.library.build_search_index("dna", progress, reuse=out if add else None)
        except BaseException as exc:
            work.close()
            said = _kept(exc, work, out)
            if said is exc:
                raise
            raise said from (None if isinstance(exc, KeyboardInterrupt) else exc)
        try:
            _place(work, out, add, plan["out"])
        finally:
            work.close()
    return ReferenceLibrary.open(out), report
