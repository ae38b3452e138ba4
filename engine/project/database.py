"""Opening a project database, its transactions, and the read API the GUI, exports and reports use.

The GUI reads a project only through ``Project``'s public methods (``list_specimens``,
``count_specimens``, ``specimen``, ``taxonomy_tree``, ``annotations``, ``import_runs``,
``status_counts``, ``embeddings``) and writes only through ``annotate``. The importer writes
through engine.project.writer.

Write discipline: the connection runs in autocommit mode and every write method opens
one explicit ``BEGIN IMMEDIATE`` transaction, so a batch is either entirely in the file or
not at all (kill -9 and power loss included; WAL journal). sqlite-utils builds the schema;
batch writes use plain ``executemany`` (fast, and the SQL is visible in one place).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from engine.errors import BioscanError
from engine.project.schema import (CALL_RANKS, EMBEDDING_DTYPE, MIGRATIONS, REVIEW_ACTIONS, SCHEMA_VERSION,
                                   SPECIMEN_LIST_COLUMNS, STATUSES, TAXON_TREE_RANKS, now_iso, q)
from engine.project.summary import fused_photo_item, refresh_review
from engine.sqlite_paths import connect, holds_no_tables, sqlite_kind, wrong_kind_message


class ProjectError(BioscanError):
    """A project database is missing, corrupt, too new, or cannot be written."""


def db_text(text: str) -> str:
    """Text SQLite can store: file names that are not valid UTF-8 (undecodable bytes, which Python
    keeps as lone surrogates) are written with backslash escapes instead of failing the batch."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")



# ------------------------------------------------------------------------------ read-side types
@dataclass
class SpecimenFilter:
    """Which specimens ``list_specimens``/``count_specimens``/``taxonomy_tree`` consider.

    ``taxon`` maps a rank to a name and matches the effective call (``final_*``: the user's
    override if any, else the machine call); ``search`` is a case-insensitive substring of the
    key, processid, sampleid or effective species/genus.
    """

    status: Sequence[str] | str | None = None
    taxon: dict[str, str] = field(default_factory=dict)
    search: str = ""
    modality: str | None = None  # "dna" | "photo": specimens that have this modality
    novel: bool | None = None
    has_errors: bool | None = None
    review: Sequence[str] | str | None = None  # "", "accepted", "overridden", "stale"
    run_id: int | None = None  # last touched by this import run
    min_confidence: float | None = None  # machine confidence at the finest called rank, inclusive
    max_confidence: float | None = None  # exclusive, and uncalled specimens count as below it
    ids: Sequence[int] | None = None  # only these specimen ids (e.g. a selection on a cluster map)
    conflict: bool | None = None  # True: specimens whose barcodes name different taxa (conflict_rank set)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []

        def one_of(column: str, values) -> None:
            values = [values] if isinstance(values, str) else list(values)
            clauses.append(f'"{column}" IN ({",".join("?" * len(values))})')
            args.extend(values)

        if self.status is not None:
            one_of("status", self.status)
        if self.review is not None:
            one_of("review", self.review)
        for rank, name in self.taxon.items():
            if rank not in CALL_RANKS:
                raise ValueError(f"unknown rank {rank!r}")
            clauses.append(f'"final_{rank}" = ?')
            args.append(name)
        if self.search:
            like = f"%{self.search}%"
            clauses.append("(specimen_key LIKE ? OR processid LIKE ? OR sampleid LIKE ? "
                           "OR final_species LIKE ? OR final_genus LIKE ?)")
            args.extend([like] * 5)
        if self.modality == "dna":
            clauses.append("n_barcodes > 0")
        elif self.modality == "photo":
            clauses.append("n_photos > 0")
        elif self.modality is not None:
            raise ValueError(f"unknown modality {self.modality!r}")
        if self.novel is not None:
            clauses.append("novel = ?" if self.novel else "(novel = ? OR novel IS NULL)")
            args.append(1 if self.novel else 0)
        if self.conflict is not None:
            clauses.append("conflict_rank != ''" if self.conflict else "conflict_rank = ''")
        if self.has_errors is not None:
            clauses.append("n_errors > 0" if self.has_errors else "n_errors = 0")
        if self.run_id is not None:
            clauses.append("run_id = ?")
            args.append(self.run_id)
        if self.min_confidence is not None:
            clauses.append("confidence >= ?")
            args.append(float(self.min_confidence))
        if self.max_confidence is not None:
            clauses.append("(confidence < ? OR confidence IS NULL)")
            args.append(float(self.max_confidence))
        if self.ids is not None:
            clauses.append("id IN (SELECT value FROM json_each(?))")  # one parameter, any number of ids
            args.append(json.dumps([int(i) for i in self.ids]))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


@dataclass
class TaxonNode:
    rank: str
    name: str  # "" = not called at this rank
    count: int
    children: list["TaxonNode"] = field(default_factory=list)


@dataclass
class SpecimenDetail:
    specimen: dict[str, Any]  # the specimens row (metadata parsed from JSON)
    items: list[dict[str, Any]]  # one per photo / barcode record, with its file's path, size, sha256
    calls: dict[int, dict[str, tuple[str, float]]]  # item id -> rank -> (name, confidence)
    matches: dict[int, list[dict[str, Any]]]  # item id -> ranked matches (similarity, identity, taxonomy)
    annotations: list[dict[str, Any]]  # oldest first


# ------------------------------------------------------------------------------ the project
class Project:
    """An open project database. Use ``open_project``."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool):
        import sqlite_utils

        self.path = path
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.readonly = readonly

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, create: bool = False, readonly: bool | None = False) -> "Project":
        """Open a project (``create``: make it if absent). ``readonly=None``: writable where the
        file and its folder can be written, else read-only (shared drives, archives, CDs)."""
        path = Path(path)
        kind = sqlite_kind(path)
        if kind == "missing" and not create:
            raise ProjectError(f"{path}: no such project (run `bioscan import ... --project {path}` to create it)")
        if kind in ("empty", "other") and not _has_companion(path, "-wal") and holds_no_tables(path):
            if not create or kind == "other":
                raise ProjectError(
                    f"{path.name} holds no project tables: if it is a copy of a project that was open at the "
                    f"time, its data is still in {path.name}-wal beside the original; copy that file too, or "
                    f"close BIOSCAN Desktop and copy {path.name} again")
        elif kind not in ("missing", "project"):
            raise ProjectError(wrong_kind_message(path, kind, "project"))
        if readonly is None:
            readonly = kind == "project" and not _writable(path)
        if kind == "missing":
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _connect(path, readonly)
            project = cls(path, conn, readonly)
            project._migrate()
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{path}: not a BIOSCAN project database, or a damaged one ({exc})") from exc
        return project

    def close(self) -> None:
        """Fold the WAL into the project file (a copy of the .db alone is then whole) and close."""
        with suppress(sqlite3.Error):
            self.checkpoint()
        self.conn.close()

    def checkpoint(self) -> None:
        """Move committed transactions from the -wal file into the project file itself. Called at
        the end of an import, after each review and on close, so that copying the .db while the app
        is open copies the data too. Readers keep working; a busy checkpoint is simply partial."""
        if not self.readonly:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        if "meta" not in self.db.table_names():
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        version = self._check_version()
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise ProjectError(f"{self.path}: project schema {version} needs upgrading; open it writable once")
        with self.transaction():
            version = self._check_version()  # again, under the write lock: another process may have created it
            if version == SCHEMA_VERSION:
                return
            for v in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[v](self.db)
            if version == 0:
                self._set_meta(project_id=str(uuid.uuid4()), created_at=now_iso())
            self._set_meta(schema_version=str(SCHEMA_VERSION))

    def _check_version(self) -> int:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise ProjectError(f"{self.path}: project schema {version} is newer than this app supports "
                               f"({SCHEMA_VERSION}); update BIOSCAN Desktop")
        if version == 0 and self.db.table_names():
            raise ProjectError(f"{self.path}: an SQLite file but not a BIOSCAN project (no meta table)")
        return version

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE ... COMMIT, rolled back on any error. Every write to
        a project goes through it (the importer's batches, reviews, the cluster cache)."""
        if self.readonly:
            raise ProjectError(f"{self.path}: opened read-only")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _write_error(self.path, exc) from exc
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise _write_error(self.path, exc) from exc
            raise

    def _set_meta(self, **values: str) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    @property
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    # -- read API (the GUI's) ------------------------------------------------------------
    def count_specimens(self, flt: SpecimenFilter | None = None) -> int:
        where, args = (flt or SpecimenFilter()).where()
        return self.conn.execute(f"SELECT count(*) FROM specimens{where}", args).fetchone()[0]

    def list_specimens(self, flt: SpecimenFilter | None = None, sort: str = "id", descending: bool = False,
                       offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """One page of specimens (dicts with SPECIMEN_LIST_COLUMNS), filtered and sorted in SQL."""
        if sort not in SPECIMEN_LIST_COLUMNS:
            raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SPECIMEN_LIST_COLUMNS)}")
        where, args = (flt or SpecimenFilter()).where()
        cols = ", ".join(f'"{c}"' for c in SPECIMEN_LIST_COLUMNS)
        direction = "DESC" if descending else "ASC"
        cur = self.conn.execute(
            f'SELECT {cols} FROM specimens{where} ORDER BY "{sort}" {direction}, id {direction} '
            f"LIMIT ? OFFSET ?", [*args, int(limit), int(offset)])
        return [dict(zip(SPECIMEN_LIST_COLUMNS, row)) for row in cur]

    def specimen_id(self, key: str) -> int | None:
        """The id of a specimen by key, processid, sampleid or alias."""
        row = self.conn.execute("SELECT id FROM specimens WHERE specimen_key = ?", [key]).fetchone()
        if row is None:
            row = self.conn.execute("SELECT s.id FROM aliases a JOIN specimens s ON s.specimen_key = a.specimen_key "
                                    "WHERE a.alias = ?", [key]).fetchone()
        return row[0] if row else None

    def specimen(self, specimen: int | str) -> SpecimenDetail:
        """Everything about one specimen (by id or key); raises ProjectError if unknown."""
        sid = specimen if isinstance(specimen, int) else self.specimen_id(specimen)
        row = None if sid is None else self._one("SELECT * FROM specimens WHERE id = ?", [sid])
        if row is None:
            raise ProjectError(f"no specimen {specimen!r} in {self.path.name}")
        row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
        items = self._all(
            "SELECT i.*, f.path, f.name AS file_name, f.kind AS file_kind, f.size AS file_size, "
            "f.sha256 AS file_sha256_now FROM items i JOIN files f ON f.id = i.file_id "
            "WHERE i.specimen_id = ? ORDER BY i.id", [sid])
        for it in items:
            it["given"] = json.loads(it["given"]) if it["given"] else {}
        calls: dict[int, dict[str, tuple[str, float]]] = {}
        for item_id, rank, name, conf in self.conn.execute(
                "SELECT item_id, rank, name, confidence FROM calls WHERE specimen_id = ?", [sid]):
            calls.setdefault(item_id, {})[rank] = (name, conf)
        matches: dict[int, list[dict[str, Any]]] = {}
        for m in self._all("SELECT * FROM matches WHERE specimen_id = ? ORDER BY item_id, position", [sid]):
            matches.setdefault(m["item_id"], []).append(m)
        return SpecimenDetail(row, items, calls, matches, self.annotations(sid))

    def annotations(self, specimen_id: int) -> list[dict[str, Any]]:
        out = self._all("SELECT * FROM annotations WHERE specimen_id = ? ORDER BY id", [specimen_id])
        for a in out:
            a["machine_call"] = json.loads(a["machine_call"]) if a["machine_call"] else {}
        return out

    def taxonomy_tree(self, flt: SpecimenFilter | None = None, ranks: Sequence[str] = TAXON_TREE_RANKS,
                      machine: bool = False) -> TaxonNode:
        """Counts of specimens per order > family > genus > species (effective calls unless machine=True)."""
        where, args = (flt or SpecimenFilter()).where()
        cols = [f'"{r}"' if machine else f'"final_{r}"' for r in ranks]
        sel = ", ".join(f"COALESCE({c}, '')" for c in cols)
        root = TaxonNode("root", "", 0)
        kids: dict[int, dict[str, TaxonNode]] = {}  # id(node) -> its children by name
        for *names, n in self.conn.execute(
                f"SELECT {sel}, count(*) FROM specimens{where} GROUP BY {sel} ORDER BY {sel}", args):
            root.count += n
            node = root
            for rank, name in zip(ranks, names):
                children = kids.setdefault(id(node), {})
                child = children.get(name)
                if child is None:
                    child = children[name] = TaxonNode(rank, name, 0)
                    node.children.append(child)
                child.count += n
                node = child
        return root

    def status_counts(self, run_id: int | None = None) -> dict[str, int]:
        where, args = SpecimenFilter(run_id=run_id).where()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self.conn.execute(f"SELECT status, count(*) FROM specimens{where} GROUP BY status", args))
        return counts

    def item_errors(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Failed items (bad files and records) with their specimen key, file path and message."""
        return self._all(
            "SELECT s.specimen_key, s.id AS specimen_id, i.modality, i.record_key, i.error, f.path FROM items i "
            "JOIN specimens s ON s.id = i.specimen_id JOIN files f ON f.id = i.file_id WHERE i.status = 'error' "
            "ORDER BY i.id" + ("" if limit is None else " LIMIT ?"), [] if limit is None else [int(limit)])

    def reviews(self) -> dict[int, dict[str, Any]]:
        """specimen id -> {"override": its latest override (user, created_at, unverified_names: rank ->
        name) or None, "notes": [(user, created_at, action, note)] oldest first} for every annotated specimen."""
        out: dict[int, dict[str, Any]] = {}
        for sid, action, user, at, note, unverified in self.conn.execute(
                "SELECT specimen_id, action, user, created_at, note, unverified_names FROM annotations ORDER BY id"):
            entry = out.setdefault(sid, {"override": None, "notes": []})
            if action == "override":
                entry["override"] = {"user": user, "created_at": at,
                                     "unverified_names": json.loads(unverified) if unverified else {}}
            if note:
                entry["notes"].append((user, at, action, note))
        return out

    def call_provenance(self, specimen_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """specimen id -> the items that made its call (the call item; for a "dna+image" call also the
        photo fused with it), each {item_id, modality ("dna"/"image"), created_at, call_reason and
        call_references (a photo's: engine.photo_labels), run (the import run
        that wrote the item: id, started_at, library_id, library_path, library_sha256), models (that
        run's models of the item's modality)}. Specimens without a call are left out."""
        if not specimen_ids:
            return {}
        runs = {r["id"]: r for r in self.import_runs()}
        rows = self.conn.execute(
            "SELECT s.id, s.call_modality, i.id, i.modality, i.run_id, i.created_at, i.call_reason, "
            "i.call_references FROM specimens s "
            "JOIN items i ON i.id = s.call_item_id WHERE s.id IN (SELECT value FROM json_each(?))",
            [json.dumps([int(i) for i in specimen_ids])]).fetchall()
        out: dict[int, list[dict[str, Any]]] = {}
        for sid, call_modality, item_id, modality, run_id, created_at, reason, references in rows:
            made = [(item_id, modality, run_id, created_at, reason, references)]
            photo = fused_photo_item(self.conn, sid) if call_modality == "dna+image" else None
            if photo is not None:
                made.append((photo, "photo", *self.conn.execute(
                    "SELECT run_id, created_at, call_reason, call_references FROM items WHERE id = ?",
                    [photo]).fetchone()))
            for iid, item_modality, rid, at, reason, references in made:
                call_modality_of_item = "dna" if item_modality == "dna" else "image"
                run = runs.get(rid) or {}
                out.setdefault(sid, []).append({
                    "item_id": iid, "modality": call_modality_of_item, "created_at": at,
                    "call_reason": reason or "", "call_references": references or "",
                    "run": {k: run.get(k) for k in ("id", "started_at", "library_id", "library_path",
                                                    "library_sha256")},
                    "models": [m for m in run.get("models") or [] if m.get("modality") == call_modality_of_item]})
        return out

    def item_qc_flags(self) -> list[tuple[str, str, str]]:
        """(specimen key, item status, qc_flags) of every barcode record that carries QC flags."""
        return self.conn.execute(
            "SELECT s.specimen_key, i.status, i.qc_flags FROM items i JOIN specimens s ON s.id = i.specimen_id "
            "WHERE i.modality = 'dna' AND i.qc_flags IS NOT NULL AND i.qc_flags != '' ORDER BY i.id").fetchall()

    def import_runs(self) -> list[dict[str, Any]]:
        """Every import run, newest first, with provenance (JSON fields parsed)."""
        runs = self._all("SELECT * FROM import_runs ORDER BY id DESC")
        for r in runs:
            for k in ("models", "settings", "inputs", "counts"):
                r[k] = json.loads(r[k]) if r[k] else {}
        return runs

    def files(self, status: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM files WHERE 1=1", []
        if status:
            sql, args = sql + " AND status = ?", args + [status]
        if kind:
            sql, args = sql + " AND kind = ?", args + [kind]
        return self._all(sql + " ORDER BY path", args)

    def iter_specimens(self, flt: SpecimenFilter | None = None, page: int = 2000) -> Iterator[dict[str, Any]]:
        """Every specimen row (all columns, metadata parsed), in id order, with ``files``:
        [(modality, path, record_key)] of its items; read a page at a time (bounded memory for exports)."""
        where, args = (flt or SpecimenFilter()).where()
        last = 0
        while True:
            joiner = " AND " if where else " WHERE "
            rows = self._all(f"SELECT * FROM specimens{where}{joiner}id > ? ORDER BY id LIMIT ?", [*args, last, page])
            if not rows:
                return
            ids = [r["id"] for r in rows]
            files: dict[int, list[tuple[str, str, str]]] = {}
            for sid, modality, path, key in self.conn.execute(
                    f"SELECT i.specimen_id, i.modality, f.path, i.record_key FROM items i JOIN files f "
                    f"ON f.id = i.file_id WHERE i.specimen_id IN ({','.join('?' * len(ids))}) ORDER BY i.id", ids):
                files.setdefault(sid, []).append((modality, path, key))
            for r in rows:
                r["metadata"] = json.loads(r["metadata"]) if r["metadata"] else {}
                r["files"] = files.get(r["id"], [])
                yield r
            last = ids[-1]

    def embeddings(self, modality: str = "dna") -> tuple[list[int], np.ndarray]:
        """(specimen ids, (n, dim) float32 matrix) of every stored embedding of a modality."""
        rows = self.conn.execute("SELECT specimen_id, dim, vector FROM embeddings WHERE modality = ? "
                                 "ORDER BY item_id", [modality]).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        mat = np.frombuffer(b"".join(r[2] for r in rows), dtype=EMBEDDING_DTYPE).reshape(len(rows), rows[0][1])
        return [r[0] for r in rows], mat.astype(np.float32)

    def embedding_rows(self, modality: str) -> tuple[dict[int, int], np.ndarray]:
        """(item id -> row of the matrix, the matrix) of a modality's stored embeddings (as ``embeddings``)."""
        item_ids = [r[0] for r in self.conn.execute(
            "SELECT item_id FROM embeddings WHERE modality = ? ORDER BY item_id", [modality])]
        _, mat = self.embeddings(modality)
        return {iid: n for n, iid in enumerate(item_ids)}, mat

    def best_barcodes(self) -> list[tuple[int, int, str, str]]:
        """(specimen id, item id, cleaned sequence, model sha256) of each specimen's longest identified,
        embedded barcode (ties: the first item): what putative species are clustered on."""
        rows = self.conn.execute(
            "SELECT i.specimen_id, i.id, i.sequence, e.model_sha256 FROM items i JOIN embeddings e "
            "ON e.item_id = i.id WHERE i.modality = 'dna' AND i.status IN ('ok', 'novel') AND i.sequence IS NOT NULL "
            "AND i.sequence != '' ORDER BY i.specimen_id, length(i.sequence) DESC, i.id").fetchall()
        chosen: dict[int, tuple[int, int, str, str]] = {}
        for sid, iid, seq, sha in rows:
            chosen.setdefault(sid, (sid, iid, seq, sha or ""))
        return list(chosen.values())

    def embedded_photos(self, exclude: set[int]) -> list[tuple[int, int, str, str]]:
        """(specimen id, item id, file sha256, model sha256) of every embedded photo of the specimens not in ``exclude``."""
        rows = self.conn.execute(
            "SELECT i.specimen_id, i.id, i.file_sha256, e.model_sha256 FROM items i JOIN embeddings e "
            "ON e.item_id = i.id WHERE i.modality = 'photo' ORDER BY i.specimen_id, i.id").fetchall()
        return [(sid, iid, fsha or "", sha or "") for sid, iid, fsha, sha in rows if sid not in exclude]

    def _one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        cur = self.conn.execute(sql, args)
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row))

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    # -- user annotations (never touch the machine call) -----------------------------------
    def annotate(self, specimen_id: int, action: str, user: str, taxonomy: dict[str, str] | None = None,
                 note: str = "", unverified_names: dict[str, str] | None = None) -> int:
        """Record a user's review: "accept" the machine call, "override" it with ``taxonomy``
        (rank -> name; ranks coarser than the finest given rank keep the machine call's name when
        not given, finer ones are empty), or "annotate" with a note only. ``unverified_names``
        (rank -> name, a part of ``taxonomy``): the override's names the user confirmed though the
        reference library does not know them (engine.taxonomy_check finds them); exports mark them.
        Returns the annotation id; the machine call columns are never changed."""
        if action not in REVIEW_ACTIONS:
            raise ValueError(f"action must be one of {REVIEW_ACTIONS}, not {action!r}")
        if not user.strip():
            raise ValueError("an annotation needs a user name")
        taxonomy = dict(taxonomy or {})
        bad = set(taxonomy) - set(CALL_RANKS)
        if bad:
            raise ValueError(f"unknown ranks {sorted(bad)}")
        if action == "override" and not any(taxonomy.values()):
            raise ValueError("an override needs at least one rank name")
        unverified = {r: n for r, n in (unverified_names or {}).items() if n}
        if any(taxonomy.get(r) != n for r, n in unverified.items()) or (unverified and action != "override"):
            raise ValueError("unverified names must be names of the override")
        with self.transaction() as conn:
            row = conn.execute(f"SELECT {', '.join(q(r) for r in CALL_RANKS)} FROM specimens WHERE id = ?",
                               [specimen_id]).fetchone()
            if row is None:
                raise ProjectError(f"no specimen {specimen_id} in {self.path.name}")
            machine = dict(zip(CALL_RANKS, (v or "" for v in row)))
            if action == "override":
                finest = max(CALL_RANKS.index(r) for r, v in taxonomy.items() if v)
                taxonomy = {r: taxonomy.get(r) or (machine[r] if i < finest else "")
                            for i, r in enumerate(CALL_RANKS)}
            cur = conn.execute(
                f"INSERT INTO annotations (specimen_id, action, {', '.join(q(r) for r in CALL_RANKS)}, note, "
                f"user, created_at, machine_call, unverified_names) "
                f"VALUES (?, ?, {', '.join('?' * len(CALL_RANKS))}, ?, ?, ?, ?, ?)",
                [specimen_id, action, *(taxonomy.get(r, "") for r in CALL_RANKS), note, user, now_iso(),
                 json.dumps(machine), json.dumps(unverified) if unverified else None])
            refresh_review(conn, [specimen_id])
            annotation_id = cur.lastrowid
        self.checkpoint()  # a review is the user's work: in the project file itself at once
        return annotation_id




def _write_error(path: Path, exc: sqlite3.OperationalError) -> ProjectError:
    msg = str(exc)
    if "full" in msg:
        return ProjectError(f"{path.name}: the disk is full ({msg}); nothing of the last batch was written; "
                            f"free some space and run the import again to resume")
    if "locked" in msg or "busy" in msg:
        return ProjectError(f"{path.name}: the project is busy in another program ({msg})")
    if "readonly" in msg or "read-only" in msg:
        return ProjectError(f"{path.name}: the project file is read-only ({msg})")
    return ProjectError(f"{path.name}: cannot write the project database ({msg})")



def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit, see Project.transaction) to exactly
    ``path``. Read-only on read-only media: SQLite's ``mode=ro`` needs a writable -shm for a WAL
    file, so where none can be made, and no -wal is pending, the file is opened ``immutable``."""
    kwargs = dict(isolation_level=None, check_same_thread=False)
    if readonly:
        try:
            conn = connect(path, readonly=True, **kwargs)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            if _has_companion(path, "-wal"):
                raise ProjectError(f"{path.name}: cannot be read here: its {path.name}-wal file holds changes not yet "
                                   f"in the project file and this folder is read-only; copy both files to a "
                                   f"writable folder") from None
            conn = connect(path, readonly=True, immutable=True, **kwargs)
    else:
        conn = connect(path, **kwargs)
        for attempt in range(50):  # a second process creating the same project holds the lock briefly
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)
        # FULL: a committed batch survives power loss too (one fsync per batch is cheap)
        conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _has_companion(path: Path, suffix: str) -> bool:
    companion = path.with_name(path.name + suffix)
    return companion.exists() and companion.stat().st_size > 0


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def open_project(path: str | Path, create: bool = False, readonly: bool | None = False) -> Project:
    """Open (or with create=True, create) a project database; ``readonly=None``: read-only only where it must be."""
    return Project.open(path, create=create, readonly=readonly)

