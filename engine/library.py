"""The reference library: taxonomy, record ids, embeddings and (optionally) cleaned
sequences in one SQLite file, searched in memory.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import sqlite_utils

from engine.errors import LibraryError
from engine.records import TAXONOMY_FIELDS, Taxonomy
from engine.search import ExactIndex, VectorIndex
from engine.sqlite_paths import connect, sqlite_kind, wrong_kind_message

if TYPE_CHECKING:
    from engine.assign import GenusPrototypes
    from engine.kmer_index import KmerIndex

SCHEMA_VERSION = 1
EMBEDDING_DTYPE = np.float16  # halves the bundled library; cosine error < 1e-3


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


@dataclass
class LoadedReferences:
    """One modality of a library in memory; position i is the same record in every field."""

    row_ids: np.ndarray
    record_ids: list[str]
    taxonomy: list[Taxonomy]
    matrix: np.ndarray  # (n, dim) float32, L2-normalised
    index: VectorIndex
    library: "ReferenceLibrary"
    modality: str
    _sequences: list[str | None] | None = None
    _genus_prototypes: "GenusPrototypes | None" = None
    _kmer_index: "KmerIndex | None" = None

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def sequences(self) -> list[str | None]:
        """Cleaned sequences by position (None where the library keeps none); loaded on first use."""
        if self._sequences is None:
            rows = self.library.db.execute(
                "SELECT sequence FROM refs WHERE modality = ? ORDER BY id", [self.modality]).fetchall()
            self._sequences = [r[0] for r in rows]
        return self._sequences

    def genus_prototypes(self) -> "GenusPrototypes":
        """The genera's prototype directions (engine.assign.GenusPrototypes), computed on first use."""
        if self._genus_prototypes is None:
            from engine.assign import GenusPrototypes

            self._genus_prototypes = GenusPrototypes(self.matrix, self.taxonomy)
        return self._genus_prototypes

    def kmer_index(self) -> "KmerIndex | None":
        """The shared-k-mer index of the sequences (engine.kmer_index), built on first use;
        None for a library without sequences or too large for one."""
        from engine.kmer_index import MAX_REFERENCES, KmerIndex

        if self._kmer_index is None and len(self) <= MAX_REFERENCES and any(self.sequences):
            self._kmer_index = KmerIndex(self.sequences)
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
             "source": str, "sequence": str, "embedding": bytes},
            pk="id", not_null={"record_id", "modality", "embedding"},
        )
        db["refs"].create_index(["modality", "record_id"], unique=True)
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
        if version != str(SCHEMA_VERSION):
            lib.close()
            raise LibraryError(f"{path}: library schema {version} is not supported (expected {SCHEMA_VERSION})")
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
    def add(self, records: Iterable[ReferenceRecord], encoder) -> int:
        """Add embedded records (one transaction); existing record ids are replaced."""
        have = self.model_for(encoder.modality)
        if have is None:
            self._set_meta(**{f"model.{encoder.modality}": json.dumps(model_identity(encoder))})
        else:
            self.check_encoder(encoder)
        rows = [
            {"record_id": r.record_id, "modality": encoder.modality, **r.taxonomy.as_dict(),
             "source": r.source, "sequence": r.sequence,
             "embedding": np.asarray(r.embedding, dtype=EMBEDDING_DTYPE).tobytes()}
            for r in records
        ]
        with self.db.conn:
            for row in rows:
                self.db.execute(
                    "DELETE FROM refs WHERE modality = ? AND record_id = ?", [row["modality"], row["record_id"]]
                )
            self.db["refs"].insert_all(rows, batch_size=1000)
        self._cache.clear()
        return len(rows)

    # -- reading ---------------------------------------------------------------------
    def count(self, modality: str | None = None) -> int:
        if modality is None:
            return self.db["refs"].count
        return self.db.execute("SELECT count(*) FROM refs WHERE modality = ?", [modality]).fetchone()[0]

    def _load(self, modality: str) -> "LoadedReferences":
        if modality not in self._cache:
            cols = ", ".join(f'"{f}"' for f in TAXONOMY_FIELDS)
            rows = self.db.execute(
                f"SELECT id, record_id, embedding, {cols} FROM refs WHERE modality = ? ORDER BY id", [modality]
            ).fetchall()
            if not rows:
                raise LibraryError(f"{self.path.name} has no {modality} references")
            mat = np.frombuffer(b"".join(r[2] for r in rows), dtype=EMBEDDING_DTYPE).reshape(len(rows), -1)
            mat = mat.astype(np.float32)
            mat /= np.linalg.norm(mat, axis=1, keepdims=True).clip(1e-12)
            self._cache[modality] = LoadedReferences(
                row_ids=np.array([r[0] for r in rows], dtype=np.int64),
                record_ids=[r[1] for r in rows],
                taxonomy=[Taxonomy(*r[3:]) for r in rows],
                matrix=mat,
                index=ExactIndex(mat),
                library=self,
                modality=modality,
            )
        return self._cache[modality]

    def references(self, modality: str = "dna") -> "LoadedReferences":
        """Every reference of a modality, loaded into memory once (embeddings, taxonomy, ids)."""
        return self._load(modality)

    def search(self, queries: np.ndarray, k: int = 20, modality: str = "dna") -> tuple[np.ndarray, np.ndarray]:
        """(similarities, positions into ``references(modality)``), each (n, k), best first."""
        return self._load(modality).index.search(queries, k)

    @property
    def has_sequences(self) -> bool:
        return self.db.execute("SELECT 1 FROM refs WHERE sequence IS NOT NULL LIMIT 1").fetchone() is not None

    def summary(self) -> dict:
        counts = {
            rank: self.db.execute(f'SELECT count(DISTINCT "{rank}") FROM refs WHERE "{rank}" != ""').fetchone()[0]
            for rank in ("order", "family", "genus", "species", "bin_uri")
        }
        by_mod = dict(self.db.execute("SELECT modality, count(*) FROM refs GROUP BY modality").fetchall())
        return {"path": str(self.path), **self.meta, "records": by_mod, "distinct": counts,
                "sequences": self.has_sequences}
