"""The reference library: taxonomy, record ids, embeddings and (optionally) cleaned
sequences in one SQLite file, searched in memory.

Sequences are stored in zlib-compressed blocks of ``SEQUENCE_BLOCK`` records (table
``seq_blocks``; each reference names its block and place in it), the records of a block
sorted by taxonomy so that near-identical barcodes sit together. Measured on the 39,764
QC-passed barcodes of barcodes.tsv and barcodes_extra.tsv (25.2 MB of bases): blocks of 64,
0.87 MB and 71 us to decode a block (44 ms for all); 2-bit packing with a side list of
ambiguity codes, 6.9 MB; zlib per record, 8.9 MB (with a shared dictionary 5.1 MB). Blocks
are decoded when a query first aligns to one of their records (``PackedSequences``).
Libraries of schema 1 keep plain text in ``refs.sequence``; they are read as they are, and
``add`` upgrades one to schema 2 (new records go to blocks, old ones stay text).

A library remembers which model pack (name, version, precision, sha256) embedded each
modality and refuses queries embedded by any other, since embeddings from different
models are not comparable. Calibration of the taxonomy-call thresholds (engine.assign)
is stored with it and redone whenever records are added.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import sqlite_utils

from engine.errors import LibraryError
from engine.progress import ProgressCallback
from engine.records import TAXONOMY_FIELDS, Taxonomy
from engine.reference_columns import (
    EMBEDDING_DTYPE, INDEX_FORMAT, INDEX_MIN_REFERENCES, Columns, RecordIds, index_folder, read_columns, read_index, write_index,
)
from engine.ann_index import ANN_MIN_REFERENCES
from engine.search import ExactIndex, VectorIndex
from engine.sqlite_paths import connect, sqlite_kind, wrong_kind_message

if TYPE_CHECKING:
    from engine.assign import GenusPrototypes
    from engine.kmer_index import KmerIndex

SCHEMA_VERSION = 2
READABLE_SCHEMAS = ("1", "2")  # 1: sequences as plain text in refs.sequence
SEQUENCE_BLOCK = 64  # sequences compressed together (see the module doc)
# a large library's files read ahead at open, in the order a search first needs them
READ_AHEAD_FILES = ("vectors.npy", "taxonomy.npy", "seq_block.npy", "seq_index.npy", "row_ids.npy")


@dataclass
class ReferenceRecord:
    record_id: str
    taxonomy: Taxonomy
    embedding: np.ndarray
    sequence: str | None = None  # cleaned barcode, when the library keeps sequences
    source: str = ""


def model_identity(encoder) -> dict[str, str]:
    """What a library stores about the encoder that embedded a modality."""
    return {
        "name": encoder.pack.name,
        "version": encoder.pack.version,
        "precision": encoder.precision,
        "sha256": encoder.model_sha256,
        "dim": str(encoder.dim),
    }


def pack_sequences(sequences: Sequence[str]) -> bytes:
    """One block: the sequences joined by newlines, zlib level 9 (sequences hold no newline)."""
    return zlib.compress("\n".join(sequences).encode("ascii"), 9)


def unpack_sequences(block: bytes) -> list[str]:
    text = zlib.decompress(block).decode("ascii")
    return text.split("\n")


class PackedSequences(Sequence):
    """A modality's cleaned sequences by position, decoded a block at a time on first access
    (the most recently used ``cache_blocks`` blocks kept). ``None`` where a record has none."""

    def __init__(self, db: sqlite_utils.Database, blocks: np.ndarray, places: np.ndarray,
                 plain: dict[int, str], cache_blocks: int = 4096):
        self.db = db
        self.blocks = blocks  # per position: seq_blocks.id, or -1 (no block: plain text or none)
        self.places = places  # per position: index within its block
        self.plain = plain  # position -> text, for records of a schema-1 library
        self.cache_blocks = cache_blocks
        self._cache: OrderedDict[int, list[str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.blocks)

    def _block(self, block_id: int) -> list[str]:
        seqs = self._cache.get(block_id)
        if seqs is None:
            row = self.db.execute("SELECT data FROM seq_blocks WHERE id = ?", [block_id]).fetchone()
            if row is None:
                raise LibraryError(f"sequence block {block_id} is missing: the library file is damaged")
            seqs = self._cache[block_id] = unpack_sequences(row[0])
            if len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(block_id)
        return seqs

    def __getitem__(self, pos):  # type: ignore[override]
        if isinstance(pos, slice):
            return [self[i] for i in range(*pos.indices(len(self)))]
        block = int(self.blocks[pos])
        if block < 0:
            return self.plain.get(int(pos) % len(self))
        return self._block(block)[int(self.places[pos])]

    def __iter__(self) -> Iterator[str | None]:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return len(self) > 0

    def any(self) -> bool:
        """Whether any record has a sequence (without decoding any)."""
        return bool((self.blocks >= 0).any() or any(self.plain.values()))


@dataclass
class LoadedReferences:
    """One modality of a library in memory; position i is the same record in every field."""

    row_ids: np.ndarray
    record_ids: Sequence[str]  # engine.reference_columns.RecordIds: read when asked for
    taxonomy: Sequence[Taxonomy]  # engine.reference_columns.TaxonomyTable
    matrix: np.ndarray  # (n, dim) L2-normalised: float32 in memory, or float16 memory-mapped
    library: "ReferenceLibrary"
    modality: str
    _columns: Columns | None = None
    _stamp: dict | None = None  # the state the columns are of
    _index: VectorIndex | None = None
    _index_note: str = ""
    _sequences: PackedSequences | None = None
    _genus_prototypes: "GenusPrototypes | None" = None
    _kmer_index: "KmerIndex | None" = None

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def index(self) -> VectorIndex:
        """The search index, opened on first use: calibration and the sequences need none, and
        opening a large library's graphs reads their neighbour lists (1.3 GB at 5 M references)."""
        if self._index is None:
            self._index, self._index_note = self.library._search_index(self.modality, self._columns, self._stamp)
        return self._index

    @property
    def index_note(self) -> str:
        """Why a library large enough for an approximate index searches exactly ("" if it does not)."""
        self.index  # noqa: B018 (opened first: the note comes with it)
        return self._index_note

    @property
    def sequences(self) -> PackedSequences:
        """Cleaned sequences by position (None where the library keeps none), each block decoded
        when first read."""
        if self._sequences is None:
            self._sequences = self.library.packed_sequences(self.modality)
        return self._sequences

    def genus_prototypes(self) -> "GenusPrototypes":
        """The genera's prototype directions (engine.assign.GenusPrototypes), computed on first use."""
        if self._genus_prototypes is None:
            from engine.assign import GenusPrototypes

            self._genus_prototypes = GenusPrototypes(self.matrix, self.taxonomy)
        return self._genus_prototypes

    def kmer_index(self) -> "KmerIndex | None":
        """The shared-k-mer index of the sequences (engine.kmer_index): opened from the user
        cache, where the first use of this state of the library built it; None for a library
        without sequences or too large for one."""
        from engine.kmer_index import MAX_REFERENCES, KmerIndex
        from engine.offline import app_cache_dir

        if self._kmer_index is None and len(self) <= MAX_REFERENCES and self.sequences.any():
            folder = app_cache_dir() / "kmer-index" / self.library.library_id / self.modality
            self._kmer_index = KmerIndex.cached(self.sequences, folder, self.library.index_stamp(self.modality))
        return self._kmer_index


class ReferenceLibrary:
    def __init__(self, path: Path, db: sqlite_utils.Database):
        self.path = path
        self.db = db
        self._cache: dict[str, LoadedReferences] = {}

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, name: str = "") -> "ReferenceLibrary":
        """A new, empty library file at ``path`` (which must not exist; its folder must).
        `bioscan library build` creates it under a temp name (engine.build.library_output)."""
        path = Path(path)
        if path.exists():
            raise LibraryError(f"{path} exists already; add records to it with --add or choose a new path")
        db = sqlite_utils.Database(connect(path))
        db["meta"].create({"key": str, "value": str}, pk="key")
        db["refs"].create(
            {"id": int, "record_id": str, "modality": str, **{f: str for f in TAXONOMY_FIELDS},
             "source": str, "sequence": str, "embedding": bytes, "seq_block": int, "seq_index": int},
            pk="id", not_null={"record_id", "modality", "embedding"},
        )
        db["refs"].create_index(["modality", "record_id"], unique=True)
        db["seq_blocks"].create({"id": int, "data": bytes}, pk="id", not_null={"data"})
        lib = cls(path, db)
        lib._set_meta(
            schema_version=str(SCHEMA_VERSION), library_id=str(uuid.uuid4()),
            name=name or path.stem, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        return lib

    @classmethod
    def create_from(cls, source: "ReferenceLibrary", path: str | Path) -> "ReferenceLibrary":
        """A copy of ``source`` as the new file ``path`` (SQLite's backup: a consistent copy)."""
        path = Path(path)
        if path.exists():
            raise LibraryError(f"{path} exists already")
        conn = connect(path)
        source.db.conn.backup(conn)
        return cls(path, sqlite_utils.Database(conn))

    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> "ReferenceLibrary":
        """Open a library file (read-only unless ``readonly=False``); LibraryError saying what the
        file is when it is not a readable library (a project, another database, a damaged file)."""
        path = Path(path)
        if not path.is_file():
            raise LibraryError(f"{path}: no such reference library")
        kind = sqlite_kind(path)
        if kind != "library":
            raise LibraryError(wrong_kind_message(path, kind, "library"))
        try:
            db = sqlite_utils.Database(connect(path, readonly=readonly))
            lib = cls(path, db)
            version = lib.meta.get("schema_version")
        except sqlite3.DatabaseError as exc:
            raise LibraryError(wrong_kind_message(path, "corrupt", "library") + f" ({exc})") from exc
        if version not in READABLE_SCHEMAS:
            lib.close()
            raise LibraryError(f"{path}: library schema {version} is not supported (this version reads "
                               f"{' and '.join(READABLE_SCHEMAS)}; a newer bioscan made it?)")
        return lib

    @classmethod
    def open_writable(cls, path: str | Path) -> "ReferenceLibrary":
        return cls.open(path, readonly=False)

    def close(self) -> None:
        self.db.conn.close()

    # -- metadata --------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.db["meta"].rows}

    def _set_meta(self, **values: str) -> None:
        self.db["meta"].upsert_all([{"key": k, "value": v} for k, v in values.items()], pk="key")

    def set_meta(self, values: dict[str, str]) -> None:
        """Store meta values (one transaction), e.g. a build's record of progress (engine.build_work)."""
        with self.db.conn:
            self._set_meta(**values)

    def drop_meta(self, keys: Iterable[str]) -> None:
        """Remove meta values (one transaction); absent keys are ignored."""
        with self.db.conn:
            self.db.conn.executemany("DELETE FROM meta WHERE key = ?", [[k] for k in keys])

    @property
    def library_id(self) -> str:
        return self.meta["library_id"]

    def model_for(self, modality: str) -> dict[str, str] | None:
        raw = self.meta.get(f"model.{modality}")
        return json.loads(raw) if raw else None

    def check_encoder(self, encoder) -> None:
        """Raise LibraryError unless this encoder made the library's embeddings of its modality."""
        have = self.model_for(encoder.modality)
        want = model_identity(encoder)
        if have is None:
            raise LibraryError(f"{self.path.name} has no {encoder.modality} references")
        if have["sha256"] != want["sha256"]:
            raise LibraryError(
                f"{self.path.name} was built with model {have['name']}@{have['version']} ({have['precision']}, "
                f"sha256 {have['sha256'][:12]}…), not {want['name']}@{want['version']} ({want['precision']}, "
                f"sha256 {want['sha256'][:12]}…); embeddings from different models cannot be compared"
            )

    @property
    def calibration(self) -> dict | None:
        raw = self.meta.get("calibration")
        return json.loads(raw) if raw else None

    def set_calibration(self, calibration: dict) -> None:
        self._set_meta(calibration=json.dumps(calibration))

    # -- writing ---------------------------------------------------------------------
    @property
    def packs_sequences(self) -> bool:
        """Schema 2 or later: sequences in compressed blocks (schema 1 kept plain text)."""
        return self.meta.get("schema_version") != "1"

    def _upgrade(self) -> None:
        """Bring a schema-1 library to schema 2 (its records keep their plain-text sequences)."""
        if self.packs_sequences:
            return
        with self.db.conn:
            for col in ("seq_block", "seq_index"):
                if col not in self.db["refs"].columns_dict:
                    self.db["refs"].add_column(col, int)
            if "seq_blocks" not in self.db.table_names():
                self.db["seq_blocks"].create({"id": int, "data": bytes}, pk="id", not_null={"data"})
            self._set_meta(schema_version=str(SCHEMA_VERSION), plain_sequences="1")

    def add(self, records: Iterable[ReferenceRecord], encoder, meta: dict[str, str] | None = None) -> int:
        """Add embedded records (one transaction); existing record ids are replaced. Their
        sequences are packed into new blocks (sorted by taxonomy: similar barcodes compress together).
        ``meta`` values are stored in the same transaction (a build's record of what it committed)."""
        self._upgrade()
        totals = self._totals(encoder.modality)  # before this state's generation replaces the one they are of
        generation = str(uuid.uuid4())
        self._set_meta(generation=generation)  # a new state: any index folder of it is stale
        have = self.model_for(encoder.modality)
        if have is None:
            self._set_meta(**{f"model.{encoder.modality}": json.dumps(model_identity(encoder))})
        else:
            self.check_encoder(encoder)
        records = list(records)
        rows = [
            {"record_id": r.record_id, "modality": encoder.modality, **r.taxonomy.as_dict(),
             "source": r.source, "sequence": None, "seq_block": None, "seq_index": None,
             "embedding": np.asarray(r.embedding, dtype=EMBEDDING_DTYPE).tobytes()}
            for r in records
        ]
        with self.db.conn:
            touched: set[int] = set()  # blocks holding a record that is replaced
            for row in rows:
                old = self.db.execute("DELETE FROM refs WHERE modality = ? AND record_id = ? RETURNING seq_block",
                                      [row["modality"], row["record_id"]]).fetchone()
                if old is not None:
                    totals["count"] -= 1
                    if old[0] is not None:
                        touched.add(int(old[0]))
            with_sequence = sorted((n for n, r in enumerate(records) if r.sequence is not None),
                                   key=lambda n: (*records[n].taxonomy.as_dict().values(), records[n].sequence))
            for start in range(0, len(with_sequence), SEQUENCE_BLOCK):
                members = with_sequence[start: start + SEQUENCE_BLOCK]
                block = self.db.execute("INSERT INTO seq_blocks (data) VALUES (?)",
                                        [pack_sequences([records[n].sequence for n in members])]).lastrowid
                for place, n in enumerate(members):
                    rows[n]["seq_block"], rows[n]["seq_index"] = block, place
            self.db["refs"].insert_all(rows, batch_size=1000)
            if touched:  # replacing records: find the blocks left empty through an index, not a scan a batch
                self.db.execute("CREATE INDEX IF NOT EXISTS refs_seq_block ON refs (seq_block) "
                                "WHERE seq_block IS NOT NULL")
            for block in touched:  # blocks whose every record was replaced
                if self.db.execute("SELECT 1 FROM refs WHERE seq_block = ? LIMIT 1", [block]).fetchone() is None:
                    self.db.execute("DELETE FROM seq_blocks WHERE id = ?", [block])
            # the rows just inserted are the table's last: its largest rowid is this modality's
            totals.update(count=totals["count"] + len(rows), generation=generation,
                          max_id=int(self.db.execute("SELECT coalesce(max(id), 0) FROM refs").fetchone()[0]))
            self._set_meta(**{f"totals.{encoder.modality}": json.dumps(totals)}, **(meta or {}))
        self._cache.clear()
        return len(rows)

    # -- reading ---------------------------------------------------------------------
    def count(self, modality: str | None = None) -> int:
        if modality is None:
            return self.db["refs"].count
        return self.db.execute("SELECT count(*) FROM refs WHERE modality = ?", [modality]).fetchone()[0]

    def _totals(self, modality: str) -> dict:
        """{count, max_id} of a modality's references: as ``add`` stored them for the library's
        present generation (a counting query reads the whole table, seconds at millions from a
        cold disk), else counted."""
        meta = self.meta
        try:
            stored = json.loads(meta.get(f"totals.{modality}", ""))
            if stored["generation"] == meta.get("generation"):
                return {"count": int(stored["count"]), "max_id": int(stored["max_id"])}
        except (ValueError, KeyError, TypeError):
            pass  # absent (a library from before they were stored), or written by another state
        count, max_id = self.db.execute("SELECT count(*), coalesce(max(id), 0) FROM refs WHERE modality = ?",
                                        [modality]).fetchone()
        return {"count": int(count), "max_id": int(max_id)}

    def index_stamp(self, modality: str) -> dict:
        """What identifies this state of a modality's references (engine.reference_columns)."""
        model = self.model_for(modality) or {}
        return {"format": INDEX_FORMAT, "library_id": self.library_id, "generation": self.meta.get("generation", ""),
                "modality": modality, **self._totals(modality), "dim": int(model.get("dim", 0))}

    def _index_folder(self, modality: str) -> Path:
        return index_folder(self.path, self.library_id) / modality

    def columns(self, modality: str, progress: ProgressCallback = None, stamp: dict | None = None) -> Columns:
        """A modality's references as columns: read from the rows (a small library), or from its
        index folder, (re)written first when missing or stale (``INDEX_MIN_REFERENCES`` or more).
        ``stamp``: the library's ``index_stamp(modality)``, when the caller has it."""
        stamp = stamp or self.index_stamp(modality)
        if stamp["count"] == 0:
            raise LibraryError(f"{self.path.name} has no {modality} references")
        dim = stamp["dim"] or len(self.db.execute("SELECT embedding FROM refs WHERE modality = ? LIMIT 1",
                                                  [modality]).fetchone()[0]) // np.dtype(EMBEDDING_DTYPE).itemsize
        if stamp["count"] < INDEX_MIN_REFERENCES:
            return read_columns(self.db.conn, modality, stamp["count"], dim, self.packs_sequences, progress=progress)
        folder = self._index_folder(modality)
        columns = read_index(folder, stamp)
        if columns is None:
            columns = write_index(folder, stamp, self.db.conn, modality, dim, self.packs_sequences, progress)
        return columns

    def uses_approximate_index(self, modality: str = "dna") -> bool:
        """Whether this library is large enough to search ``modality`` through the approximate index."""
        return self._uses_ann(self.index_stamp(modality))

    def _uses_ann(self, stamp: dict) -> bool:
        # exact search up to ANN_MIN_REFERENCES (engine.ann_index: where it stops paying); the
        # graph lives in the index folder, so never below INDEX_MIN_REFERENCES
        return stamp["count"] >= max(ANN_MIN_REFERENCES, INDEX_MIN_REFERENCES)

    def _search_index(self, modality: str, columns: Columns, stamp: dict) -> tuple[VectorIndex, str]:
        """The approximate index when the library is large enough and its graph is fresh, else
        exact search and why (a missing or stale graph never slows the open: it is built by
        ``build_search_index``, which a build or --add of the library runs)."""
        if not self._uses_ann(stamp):
            return ExactIndex(columns.vectors), ""
        from engine.ann_index import open_ann

        try:
            return open_ann(self._index_folder(modality), stamp, columns.vectors), ""
        except LibraryError as exc:
            return ExactIndex(columns.vectors), f"{exc}: {self._exact_until()}"

    def _exact_until(self) -> str:
        return (f"searching exactly (slower) until `bioscan library index {self.path.name}` (or a build or --add "
                "of the library) builds it again")

    def search_index_problem(self, modality: str = "dna") -> str:
        """Why this library searches exactly although it is large enough for the approximate
        index (its graphs absent, stale or damaged), for the front ends to show; "" when its
        search is as it should be. Reads the index's metadata only."""
        stamp = self.index_stamp(modality)
        if not self._uses_ann(stamp):
            return ""
        from engine.ann_index import ann_state

        state = ann_state(self._index_folder(modality), stamp)
        if state == "fresh":
            return ""
        kind = {"dna": "DNA", "image": "photo"}.get(modality, modality)
        return (f"{self.path.name}: the approximate index of its {stamp['count']:,} {kind} references is "
                f"{state}: {self._exact_until()}")

    def build_search_index(self, modality: str = "dna", progress: ProgressCallback = None,
                           reuse: Path | None = None) -> bool:
        """Build the modality's approximate index if the library is large enough for one and it
        is missing or stale (a build or --add calls this once, at the end). True if built.
        ``reuse``: the path of the library this one extends, whose graphs of unchanged shards
        are kept (engine.ann_index.build_ann)."""
        stamp = self.index_stamp(modality)
        if not self._uses_ann(stamp):
            return False
        from engine.ann_index import ann_state, build_ann

        columns = self.columns(modality, progress, stamp)
        folder = self._index_folder(modality)
        if ann_state(folder, stamp) == "fresh":
            return False
        earlier = index_folder(Path(reuse), self.library_id) / modality if reuse is not None else None
        build_ann(folder, stamp, columns.vectors, progress, reuse=earlier if earlier and earlier.is_dir() else None)
        self._cache.pop(modality, None)  # the next load opens the graph
        return True

    def _load(self, modality: str) -> "LoadedReferences":
        if modality not in self._cache:
            stamp = self.index_stamp(modality)
            if stamp["count"] >= INDEX_MIN_REFERENCES:  # memory-mapped files: read ahead in order, from now
                from engine.readahead import read_ahead

                folder = self._index_folder(modality)
                read_ahead(sorted(folder.glob("ann-[0-9]*.faiss")) + [folder / name for name in READ_AHEAD_FILES]
                           + [self.path])
            columns = self.columns(modality, stamp=stamp)
            self._cache[modality] = LoadedReferences(
                row_ids=columns.row_ids,
                record_ids=RecordIds(self.db.conn, columns.row_ids, modality),
                taxonomy=columns.taxonomy,
                matrix=columns.vectors,
                library=self,
                modality=modality,
                _columns=columns,
                _stamp=stamp,
            )
        return self._cache[modality]

    def references(self, modality: str = "dna") -> "LoadedReferences":
        """Every reference of a modality, loaded into memory once (embeddings, taxonomy, ids)."""
        return self._load(modality)

    def search(self, queries: np.ndarray, k: int = 20, modality: str = "dna") -> tuple[np.ndarray, np.ndarray]:
        """(similarities, positions into ``references(modality)``), each (n, k), best first."""
        return self._load(modality).index.search(queries, k)

    @property
    def has_plain_sequences(self) -> bool:
        """Whether records keep plain-text sequences in ``refs.sequence``: a schema-1 library, or
        one upgraded from it (a library made as schema 2 packs every sequence into blocks)."""
        return not self.packs_sequences or self.meta.get("plain_sequences") == "1"

    @property
    def has_sequences(self) -> bool:
        if self.packs_sequences and self.db.execute("SELECT 1 FROM seq_blocks LIMIT 1").fetchone() is not None:
            return True
        return self.has_plain_sequences and self.db.execute(
            "SELECT 1 FROM refs WHERE sequence IS NOT NULL LIMIT 1").fetchone() is not None

    def packed_sequences(self, modality: str = "dna") -> PackedSequences:
        """A modality's sequences by position (as ``references``), decoded block by block when read."""
        refs = self.references(modality)
        plain: dict[int, str] = {}
        blocks = refs._columns.seq_block
        if self.has_plain_sequences:
            # plain-text sequences (schema 1, or the records an upgraded library kept): read them now
            texts = self.db.execute("SELECT sequence FROM refs WHERE modality = ? ORDER BY id", [modality])
            plain = {n: t[0] for n, t in enumerate(texts) if t[0] is not None}
        return PackedSequences(self.db, blocks, refs._columns.seq_index, plain)

    def taxon_names(self, ranks: Sequence[str] = ("order", "family", "genus", "species")) -> dict[str, set[str]]:
        """rank -> every name the library's references (any modality) give at that rank."""
        return {rank: {r[0] for r in self.db.execute(f'SELECT DISTINCT "{rank}" FROM refs WHERE "{rank}" != ""')}
                for rank in ranks}

    def summary(self) -> dict:
        counts = {
            rank: self.db.execute(f'SELECT count(DISTINCT "{rank}") FROM refs WHERE "{rank}" != ""').fetchone()[0]
            for rank in ("order", "family", "genus", "species", "bin_uri")
        }
        by_mod = dict(self.db.execute("SELECT modality, count(*) FROM refs GROUP BY modality").fetchall())
        return {"path": str(self.path), **self.meta, "records": by_mod, "distinct": counts,
                "sequences": self.has_sequences}
