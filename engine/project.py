"""The project database: every imported specimen, its input files, QC, embeddings, matches,
machine calls, user annotations and the import runs that produced them, in one SQLite file.

The GUI reads a project only through ``Project``'s public methods (``list_specimens``,
``count_specimens``, ``specimen``, ``taxonomy_tree``, ``annotations``, ``import_runs``,
``status_counts``, ``embeddings``) and writes only through ``annotate``. The importer
(engine.importer) writes through ``write_batch`` and the ``*_run`` methods. The schema is
documented in docs/project-database.md.

Write discipline: the connection runs in autocommit mode and every write method opens
one explicit ``BEGIN IMMEDIATE`` transaction, so a batch is either entirely in the file or
not at all (kill -9 and power loss included; WAL journal). sqlite-utils builds the schema;
batch writes use plain ``executemany`` (fast, and the SQL is visible in one place).
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from engine.errors import BioscanError
from engine.records import RANKS, Call, RankCall

SCHEMA_VERSION = 2
EMBEDDING_DTYPE = np.float16  # as in the reference library
STATUSES = ("ok", "novel", "error", "pending")  # pending: photos only, no image model yet
REVIEW_ACTIONS = ("accept", "override", "annotate")
CALL_RANKS = RANKS  # order, family, genus, species, bin_uri
TAXON_TREE_RANKS = ("order", "family", "genus", "species")
# The columns of list_specimens rows, and the only ones it sorts and filters on.
SPECIMEN_LIST_COLUMNS = (
    "id", "specimen_key", "processid", "sampleid", "status", "modalities", "n_photos", "n_barcodes",
    "n_errors", "error", "call_modality", *CALL_RANKS, "confidence", "novel", "novel_rank", "top_match_id",
    "top_match_species", "top_similarity", "identity", "qc_flags", "sequence_length", "review", "disagreement_rank",
    *(f"final_{r}" for r in CALL_RANKS), "updated_at",
)


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


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------ schema
def _create_v1(db) -> None:
    """Schema version 1 (see docs/project-database.md)."""
    tax = {r: str for r in CALL_RANKS}
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["import_runs"].create({
        "id": int, "started_at": str, "finished_at": str, "status": str, "app_version": str,
        "library_id": str, "library_path": str, "library_sha256": str, "models": str, "settings": str,
        "inputs": str, "counts": str, "message": str,
    }, pk="id")
    db["files"].create({
        "id": int, "path": str, "name": str, "kind": str, "size": int, "mtime_ns": int, "sha256": str,
        "status": str, "error": str, "done": int, "records": int, "run_id": int, "updated_at": str,
    }, pk="id", not_null={"path", "kind"})
    db["files"].create_index(["path"], unique=True)
    db["specimens"].create({
        "id": int, "specimen_key": str, "processid": str, "sampleid": str, "status": str,
        "modalities": str, "n_photos": int, "n_barcodes": int, "n_errors": int, "error": str,
        "call_modality": str, "call_item_id": int, **tax, "confidence": float,
        **{f"{r}_confidence": float for r in CALL_RANKS}, "novel": int, "novel_rank": str,
        "top_match_id": str, "top_match_species": str, "top_similarity": float, "identity": float,
        "qc_flags": str, "sequence_length": int, "metadata": str,
        "review": str, **{f"final_{r}": str for r in CALL_RANKS},
        "run_id": int, "created_at": str, "updated_at": str,
    }, pk="id", not_null={"specimen_key", "status"}, defaults={"review": "", "n_errors": 0})
    db["specimens"].create_index(["specimen_key"], unique=True)
    for cols in (["status"], ["order", "family", "genus", "species"], ["family"], ["genus"], ["species"],
                 ["final_order", "final_family", "final_genus", "final_species"], ["final_family"],
                 ["final_species"], ["confidence"], ["processid"], ["sampleid"], ["review"]):
        db["specimens"].create_index(cols)
    db["aliases"].create({"alias": str, "specimen_key": str, "source": str}, pk="alias")
    db["metadata_records"].create({"key": str, "processid": str, "sampleid": str, "file_id": int,
                                   "data": str}, pk="key")
    db["items"].create({
        "id": int, "specimen_id": int, "file_id": int, "record_key": str, "modality": str, "status": str,
        "error": str, "file_sha256": str,
        # DNA: the cleaned sequence and its QC
        "sequence": str, "raw_length": int, "sequence_length": int, "ambiguous_fraction": float,
        "reverse_complemented": int, "stop_codons": int, "qc_flags": str,
        # photos: what load_photo saw (thumbnail-worthy facts)
        "width": int, "height": int, "image_format": str, "image_mode": str, "frames": int,
        "exif_orientation": int,
        # the item's own call (the specimen shows the best item's)
        "novel": int, "novel_rank": str, "confidence": float, "given": str,
        "run_id": int, "created_at": str,
    }, pk="id", not_null={"file_id", "record_key", "modality", "status"},
        foreign_keys=[("specimen_id", "specimens", "id"), ("file_id", "files", "id")])
    db["items"].create_index(["file_id", "record_key"], unique=True)
    db["items"].create_index(["specimen_id"])
    db["calls"].create({"item_id": int, "specimen_id": int, "modality": str, "rank": str, "name": str,
                        "confidence": float}, pk=("item_id", "rank"))
    db["calls"].create_index(["specimen_id"])
    db["matches"].create({"item_id": int, "specimen_id": int, "modality": str, "position": int,
                          "record_id": str, "similarity": float, "identity": float, **tax},
                         pk=("item_id", "position"))
    db["matches"].create_index(["specimen_id"])
    db["embeddings"].create({"item_id": int, "specimen_id": int, "modality": str, "model_sha256": str,
                             "dim": int, "vector": bytes}, pk="item_id")
    db["embeddings"].create_index(["modality"])
    db["annotations"].create({
        "id": int, "specimen_id": int, "action": str, **tax, "note": str, "user": str, "created_at": str,
        "machine_call": str,
    }, pk="id", not_null={"specimen_id", "action", "user", "created_at"})
    db["annotations"].create_index(["specimen_id", "id"])


def _indexes_v2(db) -> None:
    """Version 2: indexes for the taxon columns the GUI's table sorts by that v1 lacked (a sort of a
    100,000-specimen project by genus without one took 706 ms a page deep in the table), and
    ``disagreement_rank``: where a specimen's photo and barcode name different taxa (engine.fuse)."""
    for col in ("final_genus", "final_bin_uri", "bin_uri"):
        db["specimens"].create_index([col], if_not_exists=True)
    if "disagreement_rank" not in db["specimens"].columns_dict:
        db["specimens"].add_column("disagreement_rank", str, not_null_default="")


MIGRATIONS = {1: _create_v1, 2: _indexes_v2}  # version -> function bringing the schema from version-1 to version


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
    def open(cls, path: str | Path, create: bool = False, readonly: bool = False) -> "Project":
        path = Path(path)
        if not path.exists() and not create:
            raise ProjectError(f"{path}: no such project (run `bioscan import ... --project {path}` to create it)")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{path}?mode=ro" if readonly else str(path)
        try:
            # autocommit: transactions are opened explicitly by transaction()
            conn = sqlite3.connect(uri, uri=readonly, isolation_level=None, timeout=30.0,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                # FULL: a committed batch survives power loss too (one fsync per batch is cheap)
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            project = cls(path, conn, readonly)
            project._migrate()
        except sqlite3.DatabaseError as exc:
            raise ProjectError(f"{path}: not a BIOSCAN project database ({exc})") from exc
        return project

    def close(self) -> None:
        self.conn.close()

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
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise ProjectError(f"{self.path}: project schema {version} is newer than this app supports "
                               f"({SCHEMA_VERSION}); update BIOSCAN Desktop")
        if version == 0 and self.db.table_names():
            raise ProjectError(f"{self.path}: an SQLite file but not a BIOSCAN project (no meta table)")
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise ProjectError(f"{self.path}: project schema {version} needs upgrading; open it writable once")
        with self.transaction():
            for v in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[v](self.db)
            if version == 0:
                self._set_meta(project_id=str(uuid.uuid4()), created_at=now_iso())
            self._set_meta(schema_version=str(SCHEMA_VERSION))

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

    def latest_overrides(self) -> dict[int, tuple[str, str]]:
        """specimen id -> (user, time) of its latest override, for every overridden specimen."""
        rows = self.conn.execute("SELECT specimen_id, user, created_at FROM annotations WHERE action = 'override' "
                                 "ORDER BY id").fetchall()
        return {sid: (user, at) for sid, user, at in rows}

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
                 note: str = "") -> int:
        """Record a user's review: "accept" the machine call, "override" it with ``taxonomy``
        (rank -> name; ranks coarser than the finest given rank keep the machine call's name when
        not given, finer ones are empty), or "annotate" with a note only.
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
        with self.transaction() as conn:
            row = conn.execute(f"SELECT {', '.join(_q(r) for r in CALL_RANKS)} FROM specimens WHERE id = ?",
                               [specimen_id]).fetchone()
            if row is None:
                raise ProjectError(f"no specimen {specimen_id} in {self.path.name}")
            machine = dict(zip(CALL_RANKS, (v or "" for v in row)))
            if action == "override":
                finest = max(CALL_RANKS.index(r) for r, v in taxonomy.items() if v)
                taxonomy = {r: taxonomy.get(r) or (machine[r] if i < finest else "")
                            for i, r in enumerate(CALL_RANKS)}
            cur = conn.execute(
                f"INSERT INTO annotations (specimen_id, action, {', '.join(_q(r) for r in CALL_RANKS)}, note, "
                f"user, created_at, machine_call) VALUES (?, ?, {', '.join('?' * len(CALL_RANKS))}, ?, ?, ?, ?)",
                [specimen_id, action, *(taxonomy.get(r, "") for r in CALL_RANKS), note, user, now_iso(),
                 json.dumps(machine)])
            refresh_review(conn, [specimen_id])
            return cur.lastrowid


def _q(name: str) -> str:
    return f'"{name}"'


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


def refresh_review(conn: sqlite3.Connection, specimen_ids: Sequence[int]) -> None:
    """Recompute ``review`` and ``final_*`` of specimens from their latest accept/override.

    review: "" (none), "accepted", "overridden", or "stale" (accepted, but a later import
    changed the machine call). final_* = the override's names if overridden, else the machine call.
    """
    ranks = ", ".join(_q(r) for r in CALL_RANKS)
    for sid in specimen_ids:
        row = conn.execute(f"SELECT {ranks} FROM specimens WHERE id = ?", [sid]).fetchone()
        if row is None:
            continue
        machine = [v or "" for v in row]
        last = conn.execute(
            f"SELECT action, {ranks}, machine_call FROM annotations WHERE specimen_id = ? "
            f"AND action IN ('accept', 'override') ORDER BY id DESC LIMIT 1", [sid]).fetchone()
        final, review = machine, ""
        if last is not None and last[0] == "override":
            final, review = [v or "" for v in last[1:-1]], "overridden"
        elif last is not None:
            accepted = json.loads(last[-1])
            review = "accepted" if [accepted.get(r, "") for r in CALL_RANKS] == machine else "stale"
        conn.execute(f"UPDATE specimens SET review = ?, {', '.join(f'final_{r} = ?' for r in CALL_RANKS)} "
                     f"WHERE id = ?", [review, *final, sid])


def open_project(path: str | Path, create: bool = False, readonly: bool = False) -> Project:
    """Open (or with create=True, create) a project database."""
    return Project.open(path, create=create, readonly=readonly)


# ------------------------------------------------------------------------------ write side (the importer's)
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
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> source ("sampleid", ...)

    def __post_init__(self) -> None:
        for name in ("record_key", "specimen_key", "error", "processid", "sampleid"):
            setattr(self, name, db_text(getattr(self, name)))


class ProjectWriter:
    """Write methods used by engine.importer; each is one transaction."""

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
            _refresh_specimens(conn, sids)

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
                    f"{', '.join(_q(r) for r in CALL_RANKS)}) VALUES (?, ?, ?, ?, ?, ?, ?, "
                    f"{', '.join('?' * len(CALL_RANKS))})",
                    [(item_id, sid, it.call_modality, pos, m.record_id, float(m.similarity), m.identity,
                      *(m.taxonomy.get(r) for r in CALL_RANKS)) for pos, m in enumerate(it.matches[:keep_matches])])
                if it.embedding is not None:
                    vec = np.asarray(it.embedding, dtype=EMBEDDING_DTYPE)
                    conn.execute("INSERT INTO embeddings (item_id, specimen_id, modality, model_sha256, dim, vector) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 [item_id, sid, it.modality, it.model_sha256, int(vec.shape[0]), vec.tobytes()])
            _refresh_specimens(conn, touched, run_id)
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
                _refresh_specimens(conn, [sid, tid[0]])
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
    if row is None:
        cur = conn.execute(
            "INSERT INTO specimens (specimen_key, processid, sampleid, status, metadata, run_id, created_at, "
            "updated_at, review, n_errors) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, '', 0)",
            [it.specimen_key, processid, sampleid, meta[0] if meta else None, run_id, stamp, stamp])
        sid = cur.lastrowid
    else:
        sid = row[0]
        conn.execute("UPDATE specimens SET processid = COALESCE(NULLIF(processid, ''), ?), "
                     "sampleid = COALESCE(NULLIF(sampleid, ''), ?) WHERE id = ?", [processid, sampleid, sid])
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
        "confidence": None if call is None else (call.confidence(call.finest_rank) if call.finest_rank else 0.0),
        "given": json.dumps(it.given) if it.given else None,
        "run_id": run_id, "created_at": stamp,
    }
    cur = conn.execute(f"INSERT INTO items ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))
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


_CALL_ITEM_ORDER = ("CASE i.modality WHEN 'dna' THEN 0 ELSE 1 END, COALESCE(i.confidence, 0) DESC, i.id")


def _item_call(conn: sqlite3.Connection, item_id: int) -> Call:
    row = conn.execute("SELECT novel, novel_rank FROM items WHERE id = ?", [item_id]).fetchone()
    ranks = {r: RankCall(r, "", 0.0) for r in CALL_RANKS}
    for rank, name, conf in conn.execute("SELECT rank, name, confidence FROM calls WHERE item_id = ?", [item_id]):
        ranks[rank] = RankCall(rank, name or "", float(conf or 0.0))
    return Call(ranks, novel=bool(row[0]), novel_rank=row[1] or "")


def _fuse_with_photo(conn: sqlite3.Connection, sid: int, dna_item: int, values: dict[str, Any]) -> None:
    """Fold the specimen's best identified photo into its barcode call (see _refresh_specimens)."""
    from engine.fuse import fuse

    if values["call_modality"] != "dna":
        return
    photo = conn.execute(
        "SELECT i.id FROM items i WHERE i.specimen_id = ? AND i.modality = 'photo' AND i.status IN ('ok', 'novel') "
        "AND EXISTS (SELECT 1 FROM calls c WHERE c.item_id = i.id) ORDER BY COALESCE(i.confidence, 0) DESC, i.id "
        "LIMIT 1", [sid]).fetchone()
    if photo is None:
        return
    fused = fuse((_item_call(conn, dna_item), []), (_item_call(conn, photo[0]), []))
    for rank in CALL_RANKS:
        values[f"{rank}_confidence"] = fused.call.confidence(rank)
    finest = fused.call.finest_rank
    values["confidence"] = fused.call.confidence(finest) if finest else values["confidence"]
    values["call_modality"] = "dna+image"
    values["disagreement_rank"] = fused.disagreement_rank


def _refresh_specimens(conn: sqlite3.Connection, specimen_ids, run_id: int | None = None) -> None:
    """Recompute each specimen's summary from its items: status, counts, the chosen call, top match.

    The call shown for a specimen is its best identified item's: DNA before photos (a barcode
    is far more specific than a photo), then the most confident, then the first imported. When
    the specimen has an identified photo too, the barcode's call is fused with the best photo's
    (engine.fuse: the barcode's names, confidences raised where the photo agrees and lowered
    where it disagrees) and ``disagreement_rank`` says where they first name different taxa.
    """
    stamp = now_iso()
    for sid in specimen_ids:
        items = conn.execute("SELECT modality, status, error FROM items WHERE specimen_id = ? ORDER BY id",
                             [sid]).fetchall()
        if not items:
            if conn.execute("SELECT 1 FROM annotations WHERE specimen_id = ? LIMIT 1", [sid]).fetchone() is None:
                conn.execute("DELETE FROM specimens WHERE id = ?", [sid])
                continue
        n_photos = sum(m == "photo" for m, _, _ in items)
        n_barcodes = sum(m == "dna" for m, _, _ in items)
        errors = [e for _, s, e in items if s == "error"]
        modalities = "+".join(m for m in ("dna", "photo") if any(x == m for x, _, _ in items))
        best = conn.execute(
            f"SELECT i.id, i.status, i.novel, i.novel_rank, i.confidence FROM items i WHERE i.specimen_id = ? "
            f"AND i.status IN ('ok', 'novel') AND EXISTS (SELECT 1 FROM calls c WHERE c.item_id = i.id) "
            f"ORDER BY {_CALL_ITEM_ORDER} LIMIT 1", [sid]).fetchone()
        if best is not None:
            status = best[1]
        elif any(s == "pending" for _, s, _ in items):
            status = "pending"
        elif any(s in ("ok", "novel") for _, s, _ in items):
            status = "pending"
        else:
            status = "error" if items else "pending"
        dna = conn.execute(
            "SELECT qc_flags, sequence_length FROM items i WHERE specimen_id = ? AND modality = 'dna' "
            f"ORDER BY (i.status = 'error'), {_CALL_ITEM_ORDER} LIMIT 1", [sid]).fetchone()
        values: dict[str, Any] = {
            "status": status, "modalities": modalities, "n_photos": n_photos, "n_barcodes": n_barcodes,
            "n_errors": len(errors), "error": errors[0] if errors else "",
            "qc_flags": dna[0] if dna else "", "sequence_length": dna[1] if dna else None,
            "updated_at": stamp,
            "call_item_id": None, "call_modality": "", "novel": None, "novel_rank": "", "confidence": None,
            **{r: "" for r in CALL_RANKS}, **{f"{r}_confidence": None for r in CALL_RANKS},
            "top_match_id": "", "top_match_species": "", "top_similarity": None, "identity": None,
            "disagreement_rank": "",
        }
        if run_id is not None:
            values["run_id"] = run_id
        if best is not None:
            item_id = best[0]
            values.update(call_item_id=item_id, novel=best[2], novel_rank=best[3] or "", confidence=best[4])
            for rank, name, conf, modality in conn.execute(
                    "SELECT rank, name, confidence, modality FROM calls WHERE item_id = ?", [item_id]):
                values[rank], values[f"{rank}_confidence"], values["call_modality"] = name, conf, modality
            _fuse_with_photo(conn, sid, item_id, values)
            top = conn.execute("SELECT record_id, species, similarity, identity FROM matches WHERE item_id = ? "
                               "AND position = 0", [item_id]).fetchone()
            if top is not None:
                values.update(top_match_id=top[0], top_match_species=top[1], top_similarity=top[2],
                              identity=top[3])
        conn.execute(f"UPDATE specimens SET {', '.join(f'{_q(k)} = ?' for k in values)} WHERE id = ?",
                     [*values.values(), sid])
    refresh_review(conn, list(specimen_ids))
