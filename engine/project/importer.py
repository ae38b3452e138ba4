"""Batch import of folders of specimen photos, barcode files and metadata tables into a project.

``import_folders`` scans folders (engine.project.scan), then works in batches with bounded memory:
metadata tables first, then barcode records (QC, embed, match, assign via DnaIdentifier),
then photos (checked by engine.io.images; identified by the image model when one fits the library).
The CLI, the GUI and the packaged app all call ``import_folders`` with one ``ImportSettings``,
so the same folder gives the same project whichever front end ran it.
Each batch is one transaction in the project database (engine.project.writer), so the import can be
interrupted at any point and resumed by running it again; unchanged files are skipped.
A bad file or record never stops the run: it becomes an item with status "error".
"""
from __future__ import annotations

import contextlib
import gzip
import os
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from engine.errors import BioscanError, is_transient
from engine.progress import Cancelled, ProgressCallback, report
from engine.project.database import Project, open_project
from engine.project.writer import ItemResult, ProjectWriter
from engine.qc import MAX_SEQUENCE_LENGTH
from engine.records import REPORTED_MATCHES, Barcode, Call, Match, RecordError
from engine.project.scan import NOT_AN_INPUT, ScannedFile, photo_key, scan_folders


class PhotoMatcher(Protocol):
    """The photo hook: engine.identify_image.ImageIdentifier fills it (any object with this
    ``match`` does): calls and ranked matches for 8-bit RGB photos.

    Provenance is read from its ``encoder`` (or itself): ``pack`` (name, version), ``precision``,
    ``model_sha256``; embeddings computed by ``encoder.embed`` are stored with the photo.
    """

    def match(self, images: list, progress: ProgressCallback = None,
              embeddings=None) -> list[tuple[Call, list[Match]]]: ...


@dataclass
class ImportSettings:
    """Everything that decides what an import writes; stored with each import run."""

    library: str = ""  # reference library; "" = the bundled default
    dna_model: str = ""  # DNA model pack; "" = the one the library was built with (bundled)
    image_model: str = ""  # image model pack; "" = the bundled one, when it fits the library
    identify_photos: bool = True  # False: photos are checked and stored, not identified
    min_confidence: float = 0.5  # below this a rank is left uncalled
    use_sequences: bool = True  # re-rank by alignment identity when the library keeps sequences
    device: str = "auto"  # auto | cpu | cuda (engine.models.runtime)
    batch_size: int = 256  # barcode records per transaction
    photo_batch_size: int = 32  # photos decoded at once (bounds memory with big TIFFs)
    metadata_batch_size: int = 5000  # metadata-table rows per transaction
    keep_matches: int = REPORTED_MATCHES  # reference matches stored per item
    max_sequence_length: int = MAX_SEQUENCE_LENGTH  # longer "barcodes" are errors (engine.qc)


@dataclass
class ImportReport:
    run_id: int
    status: str  # completed | cancelled | interrupted | failed
    counts: dict[str, int]  # specimens touched by this run: ok, novel, error, pending
    files_processed: int = 0
    files_unchanged: int = 0
    files_ignored: int = 0
    items: int = 0  # barcode records and photos processed by this run
    files_duplicate: int = 0  # same content (sha256) as a file imported before from another path
    files_moved: int = 0  # imported before from a path that no longer exists: the project follows it
    retry: int = 0  # items left for the next run after a transient failure (memory, disk)
    records_skipped: int = 0  # records of other markers or without a sequence (not errors; see notes)
    message: str = ""
    notes: list[str] = field(default_factory=list)  # what the user should know (photos not identified, ...)

    def summary(self) -> str:
        c = self.counts
        pending = f"{c.get('pending', 0)} pending" + (" (photos awaiting an image model)" if c.get("pending") else "")
        return (f"{sum(c.values())} specimens: {c.get('ok', 0)} ok, {c.get('novel', 0)} novel, "
                f"{c.get('error', 0)} error, {pending}; "
                f"{self.files_processed} files processed, {self.files_unchanged} unchanged, "
                f"{self.files_ignored} ignored"
                + (f", {self.files_duplicate} already imported from another path" if self.files_duplicate else "")
                + (f", {self.files_moved} moved since the last import" if self.files_moved else "")
                + (f"; {self.retry} items to retry (run the import again)" if self.retry else ""))


@dataclass
class _Work:
    """A file to process in this run."""

    scanned: ScannedFile
    file_id: int = 0
    sha256: str = ""
    skip_keys: set[str] = field(default_factory=set)  # records committed by an interrupted run
    estimate: int = 1  # records expected, for progress
    error: str = ""


class _FileFailure:
    """A barcode file that failed as a whole (or part way through)."""

    def __init__(self, message: str):
        self.message = message


def _read_error(exc: BaseException) -> str:
    """The reason a file or record failed, for its error row: ours verbatim, anyone else's named."""
    if isinstance(exc, FileNotFoundError):
        return "the file disappeared during the import (or is a broken link)"
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    if isinstance(exc, BioscanError):
        return str(exc)
    return f"cannot read file: {type(exc).__name__}: {exc}"


def _content_key(w: "_Work") -> tuple[str, str]:
    """What makes two files the same input: their content, and for a photo its name too (the name
    says which specimen it shows)."""
    kind = w.scanned.kind
    return w.sha256, kind + (":" + w.scanned.path.name if kind == "photo" else "")


def _file_sha256(path: Path) -> str:
    from engine.models.pack import sha256_file

    return sha256_file(path)


def _estimate_records(path: Path) -> int:
    """Records in a barcode file, counted cheaply (for progress only)."""
    try:
        with path.open("rb") as raw:
            is_gz = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if is_gz else open
        n, fasta, first = 0, None, b""
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                if fasta is None:
                    first = chunk.lstrip()[:1]
                    fasta = first == b">"
                n += chunk.count(b"\n>") if fasta else chunk.count(b"\n")
        return max(1, n + (1 if fasta else 0) - (0 if fasta else 1))
    except Exception:  # noqa: BLE001 - a damaged gzip (zlib.error, EOFError): the reader reports it
        return 1


@contextlib.contextmanager
def _import_lock(project_path: Path):
    """One import at a time per project (released by the OS even on kill -9)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; the database's own locking still applies
        yield
        return
    lock_path = project_path.with_name(project_path.name + ".import-lock")
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BioscanError(f"another import into {project_path.name} is running; wait for it to finish") from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_photo_identifier(settings: ImportSettings) -> tuple[Any, str]:
    """(an engine.identify_image.ImageIdentifier or None, a note for the user).

    An explicit ``settings.image_model`` must open (errors raise); without one the bundled image
    pack is used when there is one and it fits the library, else photos are stored unidentified.
    """
    if not settings.identify_photos:
        return None, "photos are checked and stored, not identified (photo identification is off)"
    from engine.identify_image import open_image_identifier

    library = settings.library or None
    if settings.image_model:
        return open_image_identifier(library, settings.image_model, device=settings.device,
                                     min_confidence=settings.min_confidence), ""
    try:
        return open_image_identifier(library, None, device=settings.device,
                                     min_confidence=settings.min_confidence), ""
    except (BioscanError, ImportError) as exc:
        return None, f"photos will be checked and stored but not identified ({exc})"


# ------------------------------------------------------------------------------ the import
def import_folders(
    inputs: Sequence[str | Path],
    project: str | Path | Project,
    settings: ImportSettings | None = None,
    progress: ProgressCallback = None,
    *,
    identifier=None,
    image_identifier: PhotoMatcher | None = None,
) -> ImportReport:
    """Import folders (or files) into a project database, creating it if needed.

    The DNA identifier and the image identifier are opened from ``settings`` when there is work
    for them (``identifier`` / ``image_identifier`` stand in for them in tests and benchmarks).
    Raising engine.progress.Cancelled from ``progress`` stops cleanly after the last committed
    batch; re-running resumes.
    """
    settings = settings or ImportSettings()
    proj = project if isinstance(project, Project) else open_project(project, create=True)
    try:
        with _import_lock(proj.path):
            return _Importer(proj, settings, identifier, image_identifier, progress).run(inputs)
    finally:
        if not isinstance(project, Project):
            proj.close()


class _Importer:
    def __init__(self, project: Project, settings: ImportSettings, identifier, image_identifier,
                 progress: ProgressCallback):
        self.project = project
        self.writer = ProjectWriter(project)
        self.settings = settings
        self.identifier = identifier
        self.image_identifier = image_identifier
        self.progress = progress
        self.done = 0
        self.total = 0
        self.run_id = 0
        self.items = 0
        self.phase = "importing"  # the progress message
        self.retry = 0  # items left undone after a transient failure
        self.undone_files: set[int] = set()  # their files: not marked done, so the next run resumes them

    # -- orchestration ---------------------------------------------------------------------
    def run(self, inputs: Sequence[str | Path]) -> ImportReport:
        from engine import __version__

        report(self.progress, 0, 0, "scanning folders")
        scan = scan_folders(inputs)
        self._close_stale_runs()
        self.run_id = self.writer.begin_run({
            "app_version": __version__, "inputs": [os.path.abspath(p) for p in inputs],
            "settings": asdict(self.settings),
        })
        status, message = "failed", ""
        result = ImportReport(self.run_id, status, {}, files_ignored=len(scan.ignored))
        try:
            work, unchanged = self._plan(scan.files, result)
            result.files_processed, result.files_unchanged = len(work), unchanged
            result.notes.extend(f"{p}: {why}" for p, why in scan.ignored if why != NOT_AN_INPUT)
            barcode_work = [w for w in work if w.scanned.kind == "barcodes" and not w.error]
            photo_work = [w for w in work if w.scanned.kind == "photo" and not w.error]
            if barcode_work and self.identifier is None:
                from engine.identify import open_identifier

                self.identifier = open_identifier(self.settings.library or None, self.settings.dna_model or None,
                                                  device=self.settings.device,
                                                  min_confidence=self.settings.min_confidence,
                                                  use_sequences=self.settings.use_sequences)
            if photo_work and self.image_identifier is None:
                self.image_identifier, note = open_photo_identifier(self.settings)
                if note:
                    result.notes.append(note)
            self.writer.update_run(self.run_id, **self._provenance())
            self.total = sum(w.estimate for w in work)
            for w in work:
                if w.error:
                    self._write_file_failure(w, w.error)
            metadata_work = [w for w in work if w.scanned.kind == "metadata" and not w.error]
            self._import_metadata(metadata_work)
            self._import_barcodes(barcode_work, result)
            self._import_photos(photo_work)
            if metadata_work or barcode_work:  # new ids may adopt photos imported before
                self.writer.attach_orphan_photos(self._resolve_orphan)
            status = "completed"
        except Cancelled:
            status, message = "cancelled", "cancelled by the user; run the import again to resume"
            raise
        except KeyboardInterrupt:
            status, message = "interrupted", "interrupted; run the import again to resume"
            raise
        except BioscanError as exc:
            message = str(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the run, then re-raised
            message = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            result.status, result.message, result.items, result.retry = status, message, self.items, self.retry
            with contextlib.suppress(Exception):  # e.g. a full disk: the batches already committed stand
                result.counts = self.project.status_counts(self.run_id)
                self.writer.finish_run(self.run_id, status, {**result.counts, "items": self.items,
                                                             "files_unchanged": result.files_unchanged,
                                                             "files_ignored": result.files_ignored,
                                                             "files_duplicate": result.files_duplicate,
                                                             "files_moved": result.files_moved,
                                                             "retry": self.retry,
                                                             "records_skipped": result.records_skipped}, message)
                self.project.checkpoint()  # the import's work into the project file itself (copies see it)
        report(self.progress, self.total, self.total, "imported")
        return result

    def _close_stale_runs(self) -> None:
        # the import lock is held, so a run still marked running was killed
        stale = [r["id"] for r in self.project.import_runs() if r["status"] == "running"]
        for rid in stale:
            self.writer.update_run(rid, status="interrupted", message="the process stopped (killed or power loss)")

    def _provenance(self) -> dict[str, Any]:
        models, lib = [], {}
        ident = self.identifier
        if ident is not None:
            enc = ident.encoder
            models.append({"modality": "dna", "name": enc.pack.name, "version": enc.pack.version,
                           "precision": enc.precision, "sha256": enc.model_sha256})
            lib = {"library_id": ident.library.library_id, "library_path": str(ident.library.path),
                   "library_sha256": _file_sha256(ident.library.path)}
        img = self.image_identifier
        if img is not None:  # engine.identify_image.ImageIdentifier, or any object with .match
            source = getattr(img, "encoder", img)
            pack = getattr(source, "pack", None)
            models.append({"modality": "image", "name": getattr(pack, "name", type(img).__name__),
                           "version": getattr(pack, "version", ""), "precision": getattr(source, "precision", ""),
                           "sha256": getattr(source, "model_sha256", "")})
            library = getattr(img, "library", None)
            if not lib and library is not None:  # a photo-only run: its calls name the library too
                lib = {"library_id": library.library_id, "library_path": str(library.path),
                       "library_sha256": _file_sha256(library.path)}
        return {"models": models, **lib}

    def _tick(self, n: int, phase: str) -> None:
        self.phase = phase
        self.done += n
        self.total = max(self.total, self.done)
        report(self.progress, self.done, self.total, phase)

    def _inner_progress(self, done: int, total: int, message: str) -> None:
        # keeps the overall line alive (and Cancelled working) inside a long batch
        report(self.progress, self.done, self.total, self.phase)

    # -- planning: what changed since the last run ----------------------------------------------
    def _plan(self, files: list[ScannedFile], result: ImportReport) -> tuple[list[_Work], int]:
        work, unchanged = [], 0
        planned: dict[tuple[str, str], str] = {}  # _content_key -> path, of files new in this run
        for sf in files:
            path = str(sf.path)
            w = _Work(sf, error=sf.error)
            try:
                st = os.stat(sf.path)
            except OSError as exc:
                w.error = _read_error(exc)
                w.file_id = self.writer.register_file(path, sf.kind, 0, 0, "", self.run_id)
                work.append(w)
                continue
            old = self.writer.file_state(path)
            if old and old["done"] and old["size"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns \
                    and old["kind"] == sf.kind:
                unchanged += 1
                continue
            try:
                w.sha256 = _file_sha256(sf.path)
            except OSError as exc:
                w.error = w.error or _read_error(exc)
            if old is None and w.sha256 and not w.error and st.st_size \
                    and self._same_content_elsewhere(w, st, planned, result):
                continue
            if old and old["sha256"] == w.sha256 and w.sha256 and old["kind"] == sf.kind:
                if old["done"]:  # touched, same content
                    self.writer.touch_file(old["id"], st.st_size, st.st_mtime_ns)
                    unchanged += 1
                    continue
                w.file_id = old["id"]
                self.writer.touch_file(old["id"], st.st_size, st.st_mtime_ns)
                w.skip_keys = self.writer.stored_record_keys(old["id"])  # resume an interrupted file
            else:
                if old:
                    self.writer.reset_file(old["id"])
                w.file_id = self.writer.register_file(path, sf.kind, st.st_size, st.st_mtime_ns, w.sha256,
                                                      self.run_id)
            if sf.kind in ("barcodes", "metadata") and not w.error:
                w.estimate = max(1, _estimate_records(sf.path) - len(w.skip_keys))
            if w.sha256 and not w.error and st.st_size:
                planned.setdefault(_content_key(w), path)
            work.append(w)
        return work, unchanged

    def _same_content_elsewhere(self, w: _Work, st: os.stat_result, planned: dict[tuple[str, str], str],
                                result: ImportReport) -> bool:
        """A new path whose content was imported before (or earlier in this run) from another one:
        a moved folder (the old path is gone: the project follows the file) or a copy (skipped).
        Specimens are what a project counts; the same barcodes twice would double them. A photo's
        name says which specimen it shows, so a photo counts as the same file only under the same name."""
        path, kind = str(w.scanned.path), w.scanned.kind
        same_name = kind == "photo"
        key = _content_key(w)
        first = planned.get(key)
        if first is not None:
            result.files_duplicate += 1
            result.notes.append(f"{path}: same content as {first} (in this import): not imported twice")
            return True
        rows = [r for r in self.writer.files_with_content(w.sha256, kind)
                if not same_name or Path(r["path"]).name == w.scanned.path.name]
        for row in rows:
            if not os.path.exists(row["path"]):
                self.writer.move_file(row["id"], path, st.st_size, st.st_mtime_ns)
                result.files_moved += 1
                planned[key] = path
                return True
        if rows:
            result.files_duplicate += 1
            result.notes.append(f"{path}: same content as {rows[0]['path']}, imported before: not imported twice")
            return True
        return False

    # -- whole-file failures ---------------------------------------------------------------------
    def _write_file_failure(self, w: _Work, message: str, record_key: str = "") -> None:
        modality = "photo" if w.scanned.kind == "photo" else "dna"
        stem = w.scanned.path.stem
        name = w.scanned.path.name
        error = message if name in message else f"{name}: {message}"
        item = ItemResult(w.file_id, record_key, self.writer.resolve_key(stem), modality, "error", error=error,
                          file_sha256=w.sha256)
        self.writer.write_batch(self.run_id, [item], [])
        self.writer.mark_file(w.file_id, "error", message)
        self.items += 1
        self._tick(w.estimate, self.phase)

    # -- metadata tables -----------------------------------------------------------------------
    def _import_metadata(self, work: list[_Work]) -> None:
        """Metadata tables, streamed in chunks (a BIOSCAN-5M metadata table has millions of rows)."""
        from engine.io import read_table

        for w in work:
            rows: list[dict[str, str]] = []
            bad: list[str] = []
            first = True
            try:
                table = read_table(w.scanned.path)
                for _, row in table.rows():
                    if isinstance(row, str):
                        bad.append(row)
                        continue
                    rows.append(row)
                    if len(rows) >= self.settings.metadata_batch_size:
                        self.writer.write_metadata(w.file_id, rows, table.id_column, first=first, last=False)
                        self._tick(len(rows), "reading metadata")
                        rows, first = [], False
            except (BioscanError, OSError) as exc:
                self._write_file_failure(w, _read_error(exc))
                continue
            # malformed rows name no specimen: the file row tells the user
            note = f"{len(bad)} malformed rows skipped ({bad[0]})" if bad else ""
            self.writer.write_metadata(w.file_id, rows, table.id_column, first=first, last=True, note=note)
            self._tick(len(rows), "reading metadata")

    # -- barcodes -------------------------------------------------------------------------------
    def _records(self, w: _Work, stats) -> Iterator[Barcode | RecordError | _FileFailure]:
        from engine.io import read_barcodes

        try:
            yield from read_barcodes(w.scanned.path, stats)
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a file the reader cannot take is that file's error
            yield _FileFailure(_read_error(exc))

    def _import_barcodes(self, work: list[_Work], result: ImportReport) -> None:
        from engine.io import ReadStats

        batch: list[tuple[_Work, Barcode | RecordError]] = []
        finished: list[int] = []
        for w in work:
            seen_keys: dict[str, int] = {}
            any_record = False
            stats = ReadStats()
            for rec in self._records(w, stats):
                if isinstance(rec, _FileFailure):
                    if any_record:  # part of the file was read: keep it, add an error for the rest
                        rec = RecordError(f"{w.scanned.path.stem}#error", str(w.scanned.path), rec.message)
                    else:
                        self._flush_barcodes(batch, finished)
                        batch, finished = [], []
                        self._write_file_failure(w, rec.message)
                        break
                any_record = True
                key = rec.specimen_id
                seen_keys[key] = seen_keys.get(key, 0) + 1
                if seen_keys[key] > 1:
                    rec.specimen_id = key = f"{key}#{seen_keys[key]}"
                if key in w.skip_keys:
                    continue
                batch.append((w, rec))
                if len(batch) >= self.settings.batch_size:
                    self._flush_barcodes(batch, finished)
                    batch, finished = [], []
            else:
                finished.append(w.file_id)
            if stats.skipped:  # other markers, records without a sequence: counted, not errors
                result.records_skipped += sum(stats.skipped.values())
                result.notes.append(f"{w.scanned.path.name}: {stats.summary()}")
        self._flush_barcodes(batch, finished)

    def _flush_barcodes(self, batch: list[tuple[_Work, Barcode | RecordError]], finished: list[int]) -> None:
        from engine.qc import check_barcode

        self.phase = "identifying barcodes"
        if not batch and not finished:
            return
        items: list[ItemResult] = []
        to_match: list[int] = []
        for w, rec in batch:
            key = self.writer.resolve_key(rec.specimen_id)
            if isinstance(rec, RecordError):
                items.append(ItemResult(w.file_id, rec.specimen_id, key, "dna", "error", error=rec.message,
                                        file_sha256=w.sha256))
                continue
            given = {k: v for k, v in rec.taxonomy.as_dict().items() if v} if rec.taxonomy else {}
            item = ItemResult(w.file_id, rec.specimen_id, key, "dna", "error", file_sha256=w.sha256,
                              processid=key, sampleid=rec.sampleid, given=given,
                              metadata=dict(getattr(rec, "metadata", None) or {}),
                              aliases={rec.sampleid: "sampleid"} if rec.sampleid else {})
            item.qc = check_barcode(rec.sequence, max_length=self.settings.max_sequence_length)
            if item.qc.ok:
                item.status = "pending"
                to_match.append(len(items))
            else:
                item.error = f"QC: {item.qc.error}"
            rec.sequence = ""  # free big strings early
            items.append(item)
        if to_match:
            self._match_barcodes([items[i] for i in to_match])
        self._write(items, finished)
        self.items += len(items)
        self._tick(len(items), "identifying barcodes")

    def _match_barcodes(self, items: list[ItemResult]) -> None:
        from engine.identify import unframed_error

        self._match(self.identifier, items, [it.qc.sequence for it in items], "dna", "identification failed")
        for it in items:
            error = unframed_error(it.qc, it.call)
            if error:
                it.status, it.error, it.call, it.matches, it.embedding = "error", f"QC: {error}", None, [], None

    def _match(self, identifier, items: list[ItemResult], queries: list, call_modality: str, failure: str) -> None:
        """Embed a batch once, match it, and fill the items' calls, matches and embeddings.

        A failure of the input (a photo the model cannot take) is retried item by item, so it
        becomes that item's error row alone; a failure of the machine (memory, disk) leaves the
        items for the next run (status "retry"); cancellation propagates.
        """
        try:
            encoder = getattr(identifier, "encoder", None)
            embeddings = None if encoder is None else encoder.embed(queries, progress=self._inner_progress)
            results = identifier.match(queries, progress=self._inner_progress, embeddings=embeddings)
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the items, never the run's end
            if is_transient(exc):
                for it in items:
                    it.status, it.error = "retry", f"{failure}: {type(exc).__name__}: {exc}"
                return
            if len(items) > 1:
                for it, query in zip(items, queries):
                    self._match(identifier, [it], [query], call_modality, failure)
                return
            for it in items:
                it.status, it.error = "error", f"{failure}: {type(exc).__name__}: {exc}"
            return
        for n, (it, res) in enumerate(zip(items, results)):
            if isinstance(res, BaseException):  # ImageIdentifier: this photo alone failed
                it.status, it.error = ("retry" if is_transient(res) else "error"), f"{failure}: {res}"
                continue
            call, matches = res
            it.call, it.matches, it.call_modality = call, matches, call_modality
            it.status = "novel" if call.novel else "ok"
            if embeddings is not None and len(embeddings) == len(items):
                it.embedding, it.model_sha256 = embeddings[n], getattr(encoder, "model_sha256", "")

    def _write(self, items: list[ItemResult], finished: list[int]) -> None:
        """Store a batch; items left for a retry are not written, nor are their files marked done."""
        retry = [it for it in items if it.status == "retry"]
        if retry:
            self.retry += len(retry)
            self.undone_files.update(it.file_id for it in retry)
            items = [it for it in items if it.status != "retry"]
        finished = [f for f in finished if f not in self.undone_files]
        self.writer.write_batch(self.run_id, items, finished, keep_matches=self.settings.keep_matches)

    # -- photos ---------------------------------------------------------------------------------
    def _is_known(self, key: str) -> bool:
        return self.writer.known_key(key)

    def _resolve_orphan(self, stem: str, folder: str, exclude: str) -> str | None:
        key, paired = photo_key(stem, folder, lambda k: self._is_known(k) and self.writer.resolve_key(k) != exclude)
        return self.writer.resolve_key(key) if paired else None

    def _import_photos(self, work: list[_Work]) -> None:
        from engine.io.images import check_photo

        self.phase = "checking photos"
        size = self.settings.photo_batch_size
        preprocess = getattr(getattr(self.image_identifier, "encoder", None), "preprocess", None)
        decode_side = getattr(preprocess, "decode_side", 0)  # large JPEGs decoded near the model's size
        for start in range(0, len(work), size):
            chunk = work[start:start + size]
            items, images = [], []
            for w in chunk:
                key, _ = photo_key(w.scanned.path.stem, w.scanned.path.parent.name, self._is_known)
                item = ItemResult(w.file_id, "", self.writer.resolve_key(key), "photo", "error", file_sha256=w.sha256)
                try:
                    image, item.photo = check_photo(w.scanned.path, min_side=decode_side)
                    item.status = "pending"
                    if self.image_identifier is not None:
                        images.append((item, image))
                except BioscanError as exc:
                    item.status, item.error = ("retry" if is_transient(exc) else "error"), str(exc)
                items.append(item)
            if images:
                self._match_photos(images)
            del images
            self._write(items, [w.file_id for w in chunk])
            self.items += len(items)
            self._tick(len(items), "checking photos")

    def _match_photos(self, images: list[tuple[ItemResult, Any]]) -> None:
        # a failing image model leaves the photos stored and checked: their status says why
        self._match(self.image_identifier, [it for it, _ in images], [im for _, im in images], "image",
                    "image identification failed")
