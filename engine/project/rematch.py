"""Re-match a project's photos against a (new) library: the end of "learn from this sample".

After ``engine.learn_barcoded_photos`` has added the lab's barcoded photos to a library, the
project's photo items still carry the calls of the import; a re-import skips unchanged files.
``rematch_photos`` matches them again against ``settings.library`` with the identifier an import
opens (``open_photo_identifier``), writes the items through the importer's writer and lets the one
rule (engine.project.summary.refresh_specimens) recompute each touched specimen's call.

It is an import run of its own (provenance: library, image model, operation "rematch photos"),
written a batch per transaction under the import lock, so a kill or a cancel leaves the batches
already written consistent and the rest as they were. The photos' stored embeddings are reused
when they come from the same image model (its sha256); else the photo is read and embedded again.
Reviews are never touched: a reviewed specimen whose machine call changes keeps its review
(an accept becomes "stale", as after an import) and the report counts it.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.errors import BioscanError, is_transient
from engine.progress import Cancelled, ProgressCallback, report
from engine.project.database import Project, open_project
from engine.project.importer import ImportSettings, _file_sha256, _Importer, _import_lock, open_photo_identifier
from engine.project.schema import CALL_RANKS, EMBEDDING_DTYPE, q
from engine.project.writer import ItemResult

REMATCH_OPERATION = "rematch photos"  # import_runs.settings["operation"] of a re-match run
SCOPES = ("photo-only", "all-photos")
PHOTO_FACTS = ("width", "height", "image_format", "image_mode", "frames", "exif_orientation")

# photo items whose photo was read at import (a file that could not be read is re-imported, not re-matched)
_PHOTO_ITEMS = (
    "SELECT i.id, i.specimen_id, s.specimen_key, i.file_id, i.record_key, i.file_sha256, f.path, "
    + ", ".join(f"i.{c}" for c in PHOTO_FACTS)
    + " FROM items i JOIN specimens s ON s.id = i.specimen_id JOIN files f ON f.id = i.file_id "
    "WHERE i.modality = 'photo' AND i.width IS NOT NULL")
# ... of specimens without a usable barcode call: the call they show is their photo's (summary's rule)
_WITHOUT_BARCODE_CALL = (
    " AND NOT EXISTS (SELECT 1 FROM items d WHERE d.specimen_id = i.specimen_id AND d.modality = 'dna' "
    "AND d.status IN ('ok', 'novel') AND EXISTS (SELECT 1 FROM calls c WHERE c.item_id = d.id))")


@dataclass
class RematchReport:
    """What ``rematch_photos`` did; ``summary()`` is what the CLI and the GUI say."""

    run_id: int
    status: str  # completed | cancelled | interrupted | failed
    library: str = ""  # the library matched against
    scope: str = "photo-only"
    photos: int = 0  # photo items re-matched (errors included)
    calls_changed: int = 0  # of them, photos whose call names other taxa (or names some where it named none)
    specimens_changed: int = 0  # specimens whose machine call changed
    reviews_kept: int = 0  # reviewed specimens whose machine call changed: their reviews are kept
    embedded: int = 0  # photos read and embedded again (the others reused their stored embeddings)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (specimen key, reason)
    retry: int = 0  # photos left as they were after a transient failure (memory, disk): run it again
    message: str = ""

    def summary(self) -> str:
        """"6 photos re-matched against lab-library.db: 4 calls changed, 0 errors"."""
        return (f"{self.photos} photos re-matched against {Path(self.library).name}: "
                f"{self.calls_changed} calls changed, {len(self.errors)} errors"
                + (f"; {self.reviews_kept} reviewed specimens have a new machine call (their reviews are kept)"
                   if self.reviews_kept else "")
                + (f"; {self.retry} photos to retry (run it again)" if self.retry else ""))


def rematch_photos(project_path: str | Path, settings: ImportSettings | None = None, scope: str = "photo-only",
                   progress: ProgressCallback = None, *, image_identifier=None) -> RematchReport:
    """Re-match a project's photo items against ``settings.library`` (with ``settings.image_model``).

    ``scope``: "photo-only" (default) the photos of specimens without a usable barcode call
    (photo-only specimens, and those whose barcodes failed QC or identification); "all-photos"
    every photo. A photo whose file is needed (no stored embedding of this image model) and gone
    or changed becomes an error item; the run goes on. Raising engine.progress.Cancelled from
    ``progress`` stops after the last committed batch (and re-raises). ``image_identifier``
    stands in for the identifier opened from ``settings`` (tests). Raises BioscanError when the
    run cannot start: no such project, another import running, no image model fits the library.
    """
    _scope_sql(scope)  # a scope it does not know fails before the project is opened
    if not Path(project_path).is_file():
        raise BioscanError(f"{project_path}: no such project")
    settings = settings or ImportSettings()
    with open_project(project_path) as project, _import_lock(project.path):
        return _Rematcher(project, settings, image_identifier, progress, scope).run_rematch()


def photos_to_rematch(project: Project, scope: str = "photo-only") -> int:
    """How many photo items ``rematch_photos`` would re-match in a scope (the GUI says it before it starts)."""
    return project.conn.execute(f"SELECT count(*) FROM ({_scope_sql(scope)})").fetchone()[0]


def _scope_sql(scope: str) -> str:
    if scope not in SCOPES:
        raise BioscanError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return _PHOTO_ITEMS + (_WITHOUT_BARCODE_CALL if scope == "photo-only" else "")


class _StoredEmbeddings:
    """Stands in for the image encoder of photos whose embedding is stored: the "query" of such a
    photo is its embedding, so the importer's matching code (failures item by item) serves as is."""

    def __init__(self, model_sha256: str):
        self.model_sha256 = model_sha256

    def embed(self, vectors: Sequence[np.ndarray], progress: ProgressCallback = None) -> np.ndarray:
        return np.stack([np.asarray(v, dtype=np.float32) for v in vectors])


class _StoredEmbeddingMatcher:
    """The image identifier, fed stored embeddings instead of images."""

    def __init__(self, identifier):
        self.identifier = identifier
        self.encoder = _StoredEmbeddings(identifier.encoder.model_sha256)

    def match(self, queries, progress: ProgressCallback = None, embeddings=None):
        return self.identifier.match(queries, progress=progress, embeddings=embeddings)


class _Rematcher(_Importer):
    """The importer's photo path (matching, writing, provenance, progress) fed from the project's
    own photo items instead of scanned files."""

    def __init__(self, project: Project, settings: ImportSettings, image_identifier, progress: ProgressCallback,
                 scope: str):
        super().__init__(project, settings, None, image_identifier, progress)
        self.scope = scope
        self.phase = "re-matching photos"
        self.result = RematchReport(0, "failed", scope=scope)
        self.machine_before: dict[int, tuple[str, ...]] = {}  # specimen id -> machine call before this run

    def run_rematch(self) -> RematchReport:
        from engine import __version__

        result = self.result
        self._close_stale_runs()
        self.run_id = result.run_id = self.writer.begin_run({
            "app_version": __version__, "inputs": [],
            "settings": {**asdict(self.settings), "operation": REMATCH_OPERATION, "scope": self.scope}})
        status, message = "failed", ""
        try:
            report(self.progress, 0, 0, "opening the image model")
            if self.image_identifier is None:
                self.image_identifier, note = open_photo_identifier(self.settings)
                if self.image_identifier is None:
                    raise BioscanError(f"cannot re-match photos: {note}")
            result.library = str(self.image_identifier.library.path)
            self.writer.update_run(self.run_id, **self._provenance())
            rows = self.project._all(_scope_sql(self.scope) + " ORDER BY i.specimen_id, i.id")
            self.total = len(rows)
            self.phase = f"re-matching photos against {Path(result.library).name}"
            size = max(1, self.settings.photo_batch_size)
            for start in range(0, len(rows), size):
                self._rematch_batch(rows[start:start + size])
            status = "completed"
        except BaseException as exc:  # recorded on the run, then re-raised
            status, message = _stopped(exc)
            raise
        finally:
            result.status, result.retry = status, self.retry
            result.message = message or f"{REMATCH_OPERATION} ({self.scope}): {result.summary()}"
            with contextlib.suppress(Exception):  # e.g. a full disk: the batches already committed stand
                self._count_changed_specimens()
                self.writer.finish_run(self.run_id, status, {
                    **self.project.status_counts(self.run_id), "items": result.photos, "retry": self.retry,
                    "calls_changed": result.calls_changed, "reviews_kept": result.reviews_kept}, result.message)
                self.project.checkpoint()
        report(self.progress, self.total, self.total, "re-matched")
        return result

    # -- one batch: one transaction ---------------------------------------------------------
    def _rematch_batch(self, rows: list[dict[str, Any]]) -> None:
        identifier = self.image_identifier
        model_sha256 = getattr(identifier.encoder, "model_sha256", "")
        stored = self._stored_embeddings([r["id"] for r in rows])
        calls_before = self._call_names([r["id"] for r in rows])
        self._remember_machine_calls({r["specimen_id"] for r in rows})
        items, reused, read = [], [], []
        for row in rows:
            item = ItemResult(row["file_id"], row["record_key"], row["specimen_key"], "photo", "pending",
                              file_sha256=row["file_sha256"] or "", photo={k: row[k] for k in PHOTO_FACTS})
            vector, vector_model = stored.get(row["id"], (None, ""))
            if vector is not None and vector_model == model_sha256:
                reused.append((item, vector))
            else:
                image = self._read_photo(row, item)
                if image is not None:
                    read.append((item, image))
                elif vector is not None:  # the file is gone: keep what the photo was embedded as
                    item.embedding, item.model_sha256 = vector, vector_model
            items.append(item)
        if reused:
            self._match(_StoredEmbeddingMatcher(identifier), [it for it, _ in reused], [v for _, v in reused],
                        "image", "image identification failed")
        if read:
            self._match(identifier, [it for it, _ in read], [im for _, im in read], "image",
                        "image identification failed")
            self.result.embedded += len(read)
        del read
        self._write(items, [])
        for row, item in zip(rows, items):
            if item.status == "retry":
                continue
            self.result.photos += 1
            if item.status == "error":
                self.result.errors.append((row["specimen_key"], item.error))
            elif _names(item.call) != calls_before.get(row["id"], _NO_CALL):
                self.result.calls_changed += 1
        self.items += len(items)
        self._tick(len(items), self.phase)

    def _read_photo(self, row: dict[str, Any], item: ItemResult):
        """The photo as the importer reads it, or None with the item's error set (gone, changed, unreadable)."""
        from engine.io.images import check_photo

        path = Path(row["path"])
        name = path.name
        try:
            if not path.is_file():
                raise FileNotFoundError(path)
            if row["file_sha256"] and _file_sha256(path) != row["file_sha256"]:
                item.status, item.error = "error", (f"{name}: the photo changed since it was imported; import "
                                                    "its folder again to identify it")
                return None
            decode_side = getattr(getattr(self.image_identifier.encoder, "preprocess", None), "decode_side", 0)
            image, item.photo = check_photo(path, min_side=decode_side)
            return image
        except FileNotFoundError:
            item.status, item.error = "error", (f"{name}: the photo file is gone ({path}): moved or deleted since "
                                                "the import, and its stored embedding is of another image model; "
                                                "import it from where it is now to identify it")
        except OSError as exc:
            item.status, item.error = "error", f"{name}: cannot read the photo: {exc.strerror or exc}"
        except BioscanError as exc:
            item.status, item.error = ("retry" if is_transient(exc) else "error"), str(exc)
        return None

    # -- reads for the report ------------------------------------------------------------------
    def _stored_embeddings(self, item_ids: list[int]) -> dict[int, tuple[np.ndarray, str]]:
        out = {}
        for item_id, model_sha256, dim, vector in self.project.conn.execute(
                "SELECT item_id, model_sha256, dim, vector FROM embeddings WHERE item_id IN "
                "(SELECT value FROM json_each(?))", [json.dumps(item_ids)]):
            vec = np.frombuffer(vector, dtype=EMBEDDING_DTYPE)
            if vec.shape == (dim,):
                out[item_id] = (vec.astype(np.float32), model_sha256 or "")
        return out

    def _call_names(self, item_ids: list[int]) -> dict[int, tuple[str, ...]]:
        names: dict[int, dict[str, str]] = {}
        for item_id, rank, name in self.project.conn.execute(
                "SELECT item_id, rank, name FROM calls WHERE item_id IN (SELECT value FROM json_each(?))",
                [json.dumps(item_ids)]):
            names.setdefault(item_id, {})[rank] = name or ""
        return {iid: tuple(n.get(r, "") for r in CALL_RANKS) for iid, n in names.items()}

    def _machine_calls(self, specimen_ids) -> dict[int, tuple[str, ...]]:
        return {sid: tuple(v or "" for v in names) for sid, *names in self.project.conn.execute(
            f"SELECT id, {', '.join(q(r) for r in CALL_RANKS)} FROM specimens WHERE id IN "
            f"(SELECT value FROM json_each(?))", [json.dumps(sorted(specimen_ids))])}

    def _remember_machine_calls(self, specimen_ids: set[int]) -> None:
        new = specimen_ids - set(self.machine_before)
        if new:
            self.machine_before.update(self._machine_calls(new))

    def _count_changed_specimens(self) -> None:
        """Specimens whose machine call this run changed, and of them the reviewed ones."""
        after = self._machine_calls(self.machine_before)
        changed = {sid for sid, names in self.machine_before.items() if after.get(sid, names) != names}
        reviewed = {sid for (sid,) in self.project.conn.execute(
            "SELECT DISTINCT specimen_id FROM annotations WHERE action IN ('accept', 'override') AND specimen_id IN "
            "(SELECT value FROM json_each(?))", [json.dumps(sorted(changed))])}
        self.result.specimens_changed, self.result.reviews_kept = len(changed), len(reviewed)


def _stopped(exc: BaseException) -> tuple[str, str]:
    """(run status, message) of a re-match that stopped on ``exc``."""
    kept = "the photos re-matched so far are kept"
    if isinstance(exc, Cancelled):
        return "cancelled", f"cancelled by the user; {kept}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", f"interrupted; {kept}"
    return "failed", str(exc) if isinstance(exc, BioscanError) else f"{type(exc).__name__}: {exc}"


_NO_CALL = ("",) * len(CALL_RANKS)


def _names(call) -> tuple[str, ...]:
    return _NO_CALL if call is None else tuple(call.name(r) or "" for r in CALL_RANKS)
