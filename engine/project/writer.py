"""The importer's writes to a project: import runs, files, metadata rows and batches of items.

Each method is one transaction (``Project.transaction``), so a batch is in the file whole or not at all.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.project.database import Project, db_text
from engine.project.schema import CALL_RANKS, EMBEDDING_DTYPE, now_iso, q
from engine.project.summary import refresh_specimens


@dataclass
class ItemResult:
    """One processed input item (a barcode record or a photo file) ready to be stored."""

    file_id: int
    record_key: str  # the record's id within its file ("" for a photo)
    specimen_key: str
    modality: str  # "dna" | "photo"
    status: str  # ok | novel | error | pending
    error: str = ""
    processid: str = ""
    sampleid: str = ""
    file_sha256: str = ""
    qc: Any = None  # engine.records.BarcodeQC for DNA
    photo: dict[str, Any] | None = None  # width, height, image_format, image_mode, frames, exif_orientation
    call: Any = None  # engine.records.Call
    call_modality: str = ""  # "dna" | "image": which identifier made the call
    matches: list = field(default_factory=list)  # engine.records.Match, best first
    embedding: np.ndarray | None = None
    model_sha256: str = ""
    given: dict[str, str] = field(default_factory=dict)  # taxonomy given in the input row
    metadata: dict[str, str] = field(default_factory=dict)  # collection data of the input row (BOLD: country, ...)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> source ("sampleid", ...)

    def __post_init__(self) -> None:
        for name in ("record_key", "specimen_key", "error", "processid", "sampleid"):
            setattr(self, name, db_text(getattr(self, name)))


class ProjectWriter:
    """Write methods used by engine.project.importer; each is one transaction."""

    def __init__(self, project: Project):
        self.project = project
        self.conn = project.conn

    # -- runs ------------------------------------------------------------------------------
    def begin_run(self, provenance: dict[str, Any]) -> int:
        with self.project.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO import_runs (started_at, status, app_version, library_id, library_path, "
                "library_sha256, models, settings, inputs, counts, message) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, "
                "'{}', '')",
                [now_iso(), provenance.get("app_version", ""), provenance.get("library_id", ""),
                 provenance.get("library_path", ""), provenance.get("library_sha256", ""),
                 json.dumps(provenance.get("models", [])), json.dumps(provenance.get("settings", {})),
                 json.dumps(provenance.get("inputs", []))])
            return cur.lastrowid

    def update_run(self, run_id: int, **values: Any) -> None:
        for k in ("models", "settings", "inputs", "counts"):
            if k in values and not isinstance(values[k], str):
                values[k] = json.dumps(values[k])
        with self.project.transaction() as conn:
            conn.execute(f"UPDATE import_runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                         [*values.values(), run_id])

    def finish_run(self, run_id: int, status: str, counts: dict[str, int], message: str = "") -> None:
        self.update_run(run_id, status=status, counts=counts, message=message, finished_at=now_iso())

    # -- files -------------------------------------------------------------------------------
    def file_state(self, path: str) -> dict[str, Any] | None:
        return self.project._one("SELECT * FROM files WHERE path = ?", [db_text(path)])

    def register_file(self, path: str, kind: str, size: int, mtime_ns: int, sha256: str, run_id: int) -> int:
        """Insert or update a file row (not done) and return its id."""
        path = db_text(path)
        with self.project.transaction() as conn:
            row = conn.execute("SELECT id FROM files WHERE path = ?", [path]).fetchone()
            vals = [kind, size, mtime_ns, sha256, run_id, now_iso()]
            if row is None:
                cur = conn.execute(
                    "INSERT INTO files (path, name, kind, size, mtime_ns, sha256, run_id, updated_at, status, error, "
                    "done, records) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', '', 0, 0)",
                    [path, Path(path).name, *vals])
                return cur.lastrowid
            conn.execute("UPDATE files SET kind = ?, size = ?, mtime_ns = ?, sha256 = ?, run_id = ?, updated_at = ?, "
                         "done = 0, status = 'pending', error = '' WHERE id = ?", [*vals, row[0]])
            return row[0]

    def files_with_content(self, sha256: str, kind: str) -> list[dict[str, Any]]:
        """Completed files of this content (sha256) and kind, at whatever path they were imported from."""
        return self.project._all("SELECT * FROM files WHERE sha256 = ? AND kind = ? AND done = 1 ORDER BY id",
                                 [sha256, kind])

    def move_file(self, file_id: int, path: str, size: int, mtime_ns: int) -> None:
        """A file imported before from a path that is gone, found again at ``path`` (a moved folder)."""
        path = db_text(path)
        with self.project.transaction() as conn:
            conn.execute("UPDATE files SET path = ?, name = ?, size = ?, mtime_ns = ?, updated_at = ? WHERE id = ?",
                         [path, Path(path).name, size, mtime_ns, now_iso(), file_id])

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """A file whose content (sha256) is unchanged but whose mtime moved: remember the new stat."""
        with self.project.transaction() as conn:
            conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", [size, mtime_ns, file_id])

    def reset_file(self, file_id: int) -> None:
        """Forget everything a (changed) file contributed: its items and their results."""
        with self.project.transaction() as conn:
            sids = [r[0] for r in conn.execute("SELECT DISTINCT specimen_id FROM items WHERE file_id = ?", [file_id])]
            _delete_items(conn, "file_id = ?", [file_id])
            conn.execute("DELETE FROM metadata_records WHERE file_id = ?", [file_id])
            conn.execute("UPDATE files SET done = 0, records = 0 WHERE id = ?", [file_id])
            refresh_specimens(conn, sids)

    def stored_record_keys(self, file_id: int) -> set[str]:
        """Record keys of a file already committed (an interrupted import skips them on resume)."""
        return {r[0] for r in self.conn.execute("SELECT record_key FROM items WHERE file_id = ?", [file_id])}

    def mark_file(self, file_id: int, status: str, error: str = "") -> None:
        with self.project.transaction() as conn:
            _finish_file(conn, file_id, status, db_text(error))

    # -- metadata tables -----------------------------------------------------------------------
    def write_metadata(self, file_id: int, rows: Sequence[dict[str, str]], key_column: str | None,
                       first: bool = True, last: bool = True, note: str = "") -> int:
        """Store a chunk of a metadata table's rows (by processid, else sampleid) and the aliases
        they imply; one transaction. The first chunk replaces what the file gave before; the last
        one fills in specimens imported earlier and marks the file done (``note`` on the file row)."""
        with self.project.transaction() as conn:
            if first:
                conn.execute("DELETE FROM metadata_records WHERE file_id = ?", [file_id])
            n = 0
            for row in rows:
                pid, sid = row.get("processid", ""), row.get("sampleid", "")
                key = pid or sid or (row.get(key_column, "") if key_column else "")
                if not key:
                    continue
                conn.execute("INSERT OR REPLACE INTO metadata_records (key, processid, sampleid, file_id, data) "
                             "VALUES (?, ?, ?, ?, ?)", [key, pid, sid, file_id, json.dumps(row)])
                aliases = {sid: "sampleid"} if pid and sid and sid != pid else {}
                for col in ("file", "image_file", "image_name"):
                    stem = Path(row.get(col, "")).stem
                    if pid and stem and stem != pid:
                        aliases[stem] = col
                _add_aliases(conn, key, aliases)
                n += 1
            if last:
                # specimens imported before this table learn their metadata now
                conn.execute(
                    "UPDATE specimens SET metadata = (SELECT data FROM metadata_records m WHERE m.key IN "
                    "(specimens.specimen_key, specimens.processid, specimens.sampleid) LIMIT 1) "
                    "WHERE metadata IS NULL AND id IN (SELECT s.id FROM specimens s JOIN metadata_records m "
                    "ON m.key IN (s.specimen_key, s.processid, s.sampleid) WHERE m.file_id = ?)", [file_id])
                conn.execute("UPDATE files SET records = (SELECT count(*) FROM metadata_records WHERE file_id = ?) "
                             "WHERE id = ?", [file_id, file_id])
                _finish_file(conn, file_id, "ok", note)
            return n

    def resolve_key(self, key: str) -> str:
        """The specimen key an id stands for: itself, or the processid an alias (sampleid, photo name) maps to."""
        key = db_text(key)
        row = self.conn.execute("SELECT specimen_key FROM aliases WHERE alias = ?", [key]).fetchone()
        return row[0] if row else key

    def known_key(self, key: str) -> bool:
        key = db_text(key)
        return self.conn.execute(
            "SELECT 1 FROM specimens WHERE specimen_key = ? UNION ALL SELECT 1 FROM aliases WHERE alias = ? "
            "UNION ALL SELECT 1 FROM metadata_records WHERE key = ? LIMIT 1", [key, key, key]).fetchone() is not None

    # -- results -------------------------------------------------------------------------------
    def write_batch(self, run_id: int, items: Sequence[ItemResult], finished_files: Sequence[int] = (),
                    keep_matches: int = 10) -> None:
        """Store a batch of processed items, and mark the files it completes as done: one transaction."""
        stamp = now_iso()
        with self.project.transaction() as conn:
            touched: set[int] = set()
            for it in items:
                sid = _specimen_for(conn, it, run_id, stamp)
                touched.add(sid)
                old = conn.execute("SELECT specimen_id FROM items WHERE file_id = ? AND record_key = ?",
                                   [it.file_id, it.record_key]).fetchone()
                if old is not None:  # the same record again (a re-processed file): replace it
                    touched.add(old[0])
                    _delete_items(conn, "file_id = ? AND record_key = ?", [it.file_id, it.record_key])
                item_id = _insert_item(conn, sid, it, run_id, stamp)
                if it.call is not None:
                    conn.executemany(
                        "INSERT INTO calls (item_id, specimen_id, modality, rank, name, confidence) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(item_id, sid, it.call_modality, r, it.call.name(r), float(it.call.confidence(r)))
                         for r in CALL_RANKS])
                conn.executemany(
                    f"INSERT INTO matches (item_id, specimen_id, modality, position, record_id, similarity, identity, "
                    f"overlap, {', '.join(q(r) for r in CALL_RANKS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                    f"{', '.join('?' * len(CALL_RANKS))})",
                    [(item_id, sid, it.call_modality, pos, m.record_id, float(m.similarity), m.identity, m.overlap,
                      *(m.taxonomy.get(r) for r in CALL_RANKS)) for pos, m in enumerate(it.matches[:keep_matches])])
                if it.embedding is not None:
                    vec = np.asarray(it.embedding, dtype=EMBEDDING_DTYPE)
                    conn.execute("INSERT INTO embeddings (item_id, specimen_id, modality, model_sha256, dim, vector) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 [item_id, sid, it.modality, it.model_sha256, int(vec.shape[0]), vec.tobytes()])
            refresh_specimens(conn, touched, run_id)
            for fid in finished_files:
                _finish_file(conn, fid, None, None)

    def attach_orphan_photos(self, resolve) -> int:
        """Move photo-only specimens onto the specimen their name now resolves to (after later imports).

        ``resolve(stem, folder) -> key or None`` is the importer's pairing rule. Returns specimens merged.
        """
        rows = self.conn.execute(
            "SELECT s.id, s.specimen_key, f.path FROM specimens s JOIN items i ON i.specimen_id = s.id "
            "JOIN files f ON f.id = i.file_id WHERE s.n_barcodes = 0 AND s.n_photos > 0").fetchall()
        merged = 0
        for sid, key, path in rows:
            target = resolve(Path(path).stem, Path(path).parent.name, exclude=key)
            if not target or target == key:
                continue
            with self.project.transaction() as conn:
                tid = conn.execute("SELECT id FROM specimens WHERE specimen_key = ?", [target]).fetchone()
                if tid is None:
                    continue
                for table in ("items", "calls", "matches", "embeddings"):
                    conn.execute(f"UPDATE {table} SET specimen_id = ? WHERE specimen_id = ?", [tid[0], sid])
                conn.execute("UPDATE annotations SET specimen_id = ? WHERE specimen_id = ?", [tid[0], sid])
                refresh_specimens(conn, [sid, tid[0]])
                merged += 1
        return merged


def _add_aliases(conn: sqlite3.Connection, key: str, aliases: dict[str, str]) -> None:
    conn.executemany("INSERT OR IGNORE INTO aliases (alias, specimen_key, source) VALUES (?, ?, ?)",
                     [(a, key, src) for a, src in aliases.items() if a and a != key])


def _specimen_for(conn: sqlite3.Connection, it: ItemResult, run_id: int, stamp: str) -> int:
    meta = conn.execute("SELECT data, processid, sampleid FROM metadata_records WHERE key IN (?, ?, ?) LIMIT 1",
                        [it.specimen_key, it.processid or it.specimen_key, it.sampleid or it.specimen_key]).fetchone()
    processid = it.processid or (meta[1] if meta else "")
    sampleid = it.sampleid or (meta[2] if meta else "")
    row = conn.execute("SELECT id FROM specimens WHERE specimen_key = ?", [it.specimen_key]).fetchone()
    # a metadata table's row wins over the collection data a barcode file carries (BOLD packages)
    metadata = meta[0] if meta else (json.dumps(it.metadata) if it.metadata else None)
    if row is None:
        cur = conn.execute(
            "INSERT INTO specimens (specimen_key, processid, sampleid, status, metadata, run_id, created_at, "
            "updated_at, review, n_errors) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, '', 0)",
            [it.specimen_key, processid, sampleid, metadata, run_id, stamp, stamp])
        sid = cur.lastrowid
    else:
        sid = row[0]
        conn.execute("UPDATE specimens SET processid = COALESCE(NULLIF(processid, ''), ?), "
                     "sampleid = COALESCE(NULLIF(sampleid, ''), ?), metadata = COALESCE(metadata, ?) WHERE id = ?",
                     [processid, sampleid, metadata, sid])
    _add_aliases(conn, it.specimen_key, it.aliases)
    return sid


def _insert_item(conn: sqlite3.Connection, sid: int, it: ItemResult, run_id: int, stamp: str) -> int:
    qc, photo, call = it.qc, it.photo or {}, it.call
    row = {
        "specimen_id": sid, "file_id": it.file_id, "record_key": it.record_key, "modality": it.modality,
        "status": it.status, "error": it.error, "file_sha256": it.file_sha256,
        "sequence": qc.sequence if qc is not None and qc.ok else None,
        "raw_length": qc.raw_length if qc is not None else None,
        "sequence_length": qc.length if qc is not None else None,
        "ambiguous_fraction": qc.ambiguous_fraction if qc is not None else None,
        "reverse_complemented": int(qc.reverse_complemented) if qc is not None else None,
        "stop_codons": qc.stop_codons if qc is not None else None,
        "qc_flags": ";".join(qc.flags) if qc is not None else "",
        **{k: photo.get(k) for k in ("width", "height", "image_format", "image_mode", "frames",
                                     "exif_orientation")},
        "novel": None if call is None else int(call.novel),
        "novel_rank": None if call is None else call.novel_rank,
        "confidence": None if call is None else (call.confidence(call.shown_rank) if call.shown_rank else 0.0),
        "given": json.dumps(it.given) if it.given else None,
        # a photo's call (engine.identify_image.PhotoCall): why ranks were left uncalled, against what
        "call_reason": (getattr(call, "reason", "") or None) if call is not None else None,
        "call_references": (getattr(call, "references", "") or None) if call is not None else None,
        "run_id": run_id, "created_at": stamp,
    }
    # any text may carry a file name that is not valid UTF-8 (an error message naming the file)
    values = [db_text(v) if isinstance(v, str) else v for v in row.values()]
    cur = conn.execute(f"INSERT INTO items ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", values)
    return cur.lastrowid


def _delete_items(conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> None:
    sub = f"SELECT id FROM items WHERE {where}"
    for table in ("calls", "matches", "embeddings"):
        conn.execute(f"DELETE FROM {table} WHERE item_id IN ({sub})", args)
    conn.execute(f"DELETE FROM items WHERE {where}", args)


def _finish_file(conn: sqlite3.Connection, file_id: int, status: str | None, error: str | None) -> None:
    """Mark a file done; its status is error if it (as a whole) failed, else ok."""
    n = conn.execute("SELECT count(*) FROM items WHERE file_id = ?", [file_id]).fetchone()[0]
    if status is None:
        status, error = "ok", ""
    conn.execute("UPDATE files SET done = 1, status = ?, error = ?, records = MAX(records, ?) WHERE id = ?",
                 [status, error, n, file_id])


