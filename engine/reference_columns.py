"""One modality of a reference library as columns: row ids, taxonomy codes, embeddings and the
places of the sequences, read from the library's rows in one streaming pass.

A small library's columns are read into memory when it is opened. A library of
``INDEX_MIN_REFERENCES`` or more keeps them in an index folder beside it
(``<library>.index/<modality>/``, ``.npy`` files opened memory-mapped), so opening it reads a
few small files instead of every row, and its memory is what a search touches. The folder is
derived from the library file alone: it carries the library's id and generation (a new one at
every change) and is rebuilt whenever it is missing or stale, so copying just the ``.db``
still works; where the library's folder cannot be written the index goes to the user cache.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from engine.errors import LibraryError
from engine.progress import ProgressCallback, report
from engine.records import TAXONOMY_FIELDS, Taxonomy

INDEX_MIN_REFERENCES = 100_000  # below: reading the rows at open is quick (docs/benchmarks.md, library at scale)
EMBEDDING_DTYPE = np.float16  # as stored in the library rows
READ_BATCH = 50_000  # rows read from SQLite at a time: bounds the memory of a pass
INDEX_FORMAT = "1"
MADE_TAXONOMIES = 200_000  # distinct lineages kept made (Taxonomy is immutable: shared safely)


class TaxonomyTable(Sequence[Taxonomy]):
    """Taxonomy by position, as integer codes per rank (0: not named there) and each rank's names."""

    def __init__(self, codes: np.ndarray, names: Sequence[Sequence[str]]):
        self.codes = codes  # (n, len(TAXONOMY_FIELDS)) int32
        self.names = [list(n) for n in names]  # per field, names[f][0] == ""
        # one Taxonomy per distinct lineage: a search reads the same few thousand again and again
        self._made: dict[tuple[int, ...], Taxonomy] = {}

    def __len__(self) -> int:
        return len(self.codes)

    def _taxonomy(self, row: list[int]) -> Taxonomy:
        key = tuple(row)
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= MADE_TAXONOMIES:
                self._made.clear()
            made = self._made[key] = Taxonomy(*(names[c] for names, c in zip(self.names, row)))
        return made

    def __getitem__(self, pos):  # type: ignore[override]
        if isinstance(pos, slice):
            return [self[i] for i in range(*pos.indices(len(self)))]
        return self._taxonomy(self.codes[pos].tolist())

    def __iter__(self) -> Iterator[Taxonomy]:
        for start in range(0, len(self), READ_BATCH):
            for row in np.asarray(self.codes[start: start + READ_BATCH]).tolist():
                yield self._taxonomy(row)

    def codes_of(self, rank: str) -> np.ndarray:
        """Each record's code at ``rank`` (0: not named at it); codes index ``names_of(rank)``."""
        return np.asarray(self.codes[:, TAXONOMY_FIELDS.index(rank)])

    def names_of(self, rank: str) -> list[str]:
        return self.names[TAXONOMY_FIELDS.index(rank)]


class RecordIds(Sequence[str]):
    """Record ids by position, read from the library when asked for (a million Python strings
    would cost more to load than the whole search)."""

    def __init__(self, conn: sqlite3.Connection, row_ids: np.ndarray, modality: str):
        self.conn = conn
        self.row_ids = row_ids
        self.modality = modality

    def __len__(self) -> int:
        return len(self.row_ids)

    def __getitem__(self, pos):  # type: ignore[override]
        if isinstance(pos, slice):
            return [self[i] for i in range(*pos.indices(len(self)))]
        row = self.conn.execute("SELECT record_id FROM refs WHERE id = ?", [int(self.row_ids[pos])]).fetchone()
        if row is None:
            raise LibraryError("a reference is missing from the library file: its index is stale or the file damaged")
        return row[0]

    def __iter__(self) -> Iterator[str]:
        return (r[0] for r in self.conn.execute("SELECT record_id FROM refs WHERE modality = ? ORDER BY id",
                                                [self.modality]))


@dataclass
class Columns:
    """A modality's references by position (``row_ids`` ascending, as the library stores them)."""

    row_ids: np.ndarray  # int64
    taxonomy: TaxonomyTable
    vectors: np.ndarray  # (n, dim): float32 in memory, or float16 memory-mapped; L2-normalised
    seq_block: np.ndarray  # seq_blocks.id of each record's sequence, -1 where it has none in a block
    seq_index: np.ndarray  # place within its block


def _row_batches(conn: sqlite3.Connection, modality: str, blocks: bool) -> Iterator[list[tuple]]:
    cols = ", ".join(f'"{f}"' for f in TAXONOMY_FIELDS)
    places = "coalesce(seq_block, -1), coalesce(seq_index, 0)" if blocks else "-1, 0"
    cur = conn.execute(f"SELECT id, embedding, {places}, {cols} FROM refs WHERE modality = ? ORDER BY id",
                       [modality])
    while True:
        rows = cur.fetchmany(READ_BATCH)
        if not rows:
            return
        yield rows


class _Coder:
    """Names to codes, rank by rank, as the rows stream past."""

    def __init__(self):
        self.index = [{"": 0} for _ in TAXONOMY_FIELDS]

    def codes(self, rows: list[tuple], first: int) -> np.ndarray:
        out = np.empty((len(rows), len(TAXONOMY_FIELDS)), dtype=np.int32)
        for f, index in enumerate(self.index):
            col = first + f
            out[:, f] = [index.setdefault(r[col] or "", len(index)) for r in rows]
        return out

    def names(self) -> list[list[str]]:
        return [list(index) for index in self.index]  # dicts keep insertion order: code i is the i-th name


def read_columns(conn: sqlite3.Connection, modality: str, count: int, dim: int, blocks: bool,
                 out: dict[str, np.ndarray] | None = None, progress: ProgressCallback = None) -> Columns:
    """The columns of ``count`` references in one pass over the rows, into ``out``'s arrays when
    given (memory-mapped files: see ``write_index``) or new ones in memory."""
    arrays = out or {"row_ids": np.empty(count, np.int64), "taxonomy": np.empty((count, len(TAXONOMY_FIELDS)), np.int32),
                     "vectors": np.empty((count, dim), np.float32), "seq_block": np.empty(count, np.int64),
                     "seq_index": np.empty(count, np.int32)}
    coder = _Coder()
    done = 0
    for rows in _row_batches(conn, modality, blocks):
        end = done + len(rows)
        if end > count:
            raise LibraryError("the library changed while it was being read; open it again")
        arrays["row_ids"][done:end] = [r[0] for r in rows]
        vec = np.frombuffer(b"".join(r[1] for r in rows), dtype=EMBEDDING_DTYPE).reshape(len(rows), dim)
        vec = vec.astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True).clip(1e-12)
        arrays["vectors"][done:end] = vec
        arrays["seq_block"][done:end] = [r[2] for r in rows]
        arrays["seq_index"][done:end] = [r[3] for r in rows]
        arrays["taxonomy"][done:end] = coder.codes(rows, 4)
        done = end
        report(progress, done, count, "reading references")
    if done != count:
        raise LibraryError("the library changed while it was being read; open it again")
    return Columns(arrays["row_ids"], TaxonomyTable(arrays["taxonomy"], coder.names()), arrays["vectors"],
                   arrays["seq_block"], arrays["seq_index"])


# ------------------------------------------------------------------------- index folder
def index_folder(library_path: Path, library_id: str) -> Path:
    """Where a library's index lives: beside it, or in the user cache when its folder is read-only."""
    beside = _beside(library_path)
    if os.access(library_path.parent, os.W_OK) or beside.is_dir():
        return beside
    from engine.offline import app_cache_dir

    return app_cache_dir() / "library-index" / library_id


def _stamp_path(folder: Path) -> Path:
    return folder / "stamp.json"


def read_index(folder: Path, stamp: dict) -> Columns | None:
    """The columns from an index folder written for exactly ``stamp``; None when absent or stale."""
    try:
        have = json.loads(_stamp_path(folder).read_text())
    except (OSError, ValueError):
        return None
    if have != stamp:
        return None
    try:
        arr = {name: np.load(folder / f"{name}.npy", mmap_mode="r")
               for name in ("row_ids", "taxonomy", "vectors", "seq_block", "seq_index")}
        names = json.loads((folder / "names.json").read_text())
    except (OSError, ValueError) as exc:
        raise LibraryError(f"the library's index {folder} is damaged ({exc}); delete the folder and it is "
                           "rebuilt") from exc
    n = stamp["count"]
    if any(len(a) != n for a in arr.values()):
        raise LibraryError(f"the library's index {folder} is damaged (its arrays do not hold {n} references); "
                           "delete the folder and it is rebuilt")
    return Columns(arr["row_ids"], TaxonomyTable(arr["taxonomy"], names), arr["vectors"], arr["seq_block"],
                   arr["seq_index"])


class _FileRows:
    """An .npy file's array written a block of rows at a time through the file, not through a
    mapping: pages written through a mapping stay in the process's resident memory, so filling
    the columns of millions of references so would hold them all (2.6 GB of embeddings at 5 M)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        from numpy.lib import format as npy

        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.row_bytes = self.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        self.file = open(path, "w+b")
        npy.write_array_header_1_0(self.file, {"descr": npy.dtype_to_descr(self.dtype), "fortran_order": False,
                                               "shape": shape})
        self.offset = self.file.tell()
        self.file.truncate(self.offset + shape[0] * self.row_bytes)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, rows: slice, values) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype)
        if data.nbytes != (rows.stop - rows.start) * self.row_bytes:
            raise ValueError(f"{data.nbytes} bytes for rows {rows.start}-{rows.stop}")
        view, at = memoryview(data).cast("B"), self.offset + rows.start * self.row_bytes
        while view:  # pwrite may write less than asked
            written = os.pwrite(self.file.fileno(), view, at)
            view, at = view[written:], at + written

    def close(self) -> None:
        self.file.close()


def write_index(folder: Path, stamp: dict, conn: sqlite3.Connection, modality: str, dim: int, blocks: bool,
                progress: ProgressCallback = None) -> Columns:
    """Write the index folder for ``stamp`` (arrays filled in one pass over the rows, so memory
    stays bounded at any size) under a temp name, then put it in place."""
    n = stamp["count"]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        shapes = {"row_ids": ((n,), np.int64), "taxonomy": ((n, len(TAXONOMY_FIELDS)), np.int32),
                  "vectors": ((n, dim), EMBEDDING_DTYPE), "seq_block": ((n,), np.int64), "seq_index": ((n,), np.int32)}
        arrays = {name: _FileRows(tmp / f"{name}.npy", shape, dt) for name, (shape, dt) in shapes.items()}
        try:
            names = read_columns(conn, modality, n, dim, blocks, out=arrays, progress=progress).taxonomy.names
        finally:
            for a in arrays.values():
                a.close()
        (tmp / "names.json").write_text(json.dumps(names))
        _stamp_path(tmp).write_text(json.dumps(stamp))  # last: a folder without it is never read
        if folder.exists():
            for graph in folder.glob("ann*"):  # the approximate index's, stale now: a rebuild keeps its unchanged shards
                os.replace(graph, tmp / graph.name)
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    columns = read_index(folder, stamp)
    assert columns is not None
    return columns


def _beside(library_path: Path) -> Path:
    return library_path.with_name(library_path.name + ".index")


@contextmanager
def index_follows(library_path: Path) -> Iterator[Callable[[Path], None]]:
    """For a library written under a temp name and renamed into place (engine.atomic): the index
    folder made for the temp file (its calibration reads the columns) follows it to ``library_path``
    on success, and is removed on failure. Yields the function to call with the temp path."""
    temps: list[Path] = []
    try:
        yield temps.append
    except BaseException:
        for tmp in temps:
            shutil.rmtree(_beside(tmp), ignore_errors=True)
        raise
    for tmp in temps:
        if _beside(tmp).is_dir():
            shutil.rmtree(_beside(library_path), ignore_errors=True)
            os.replace(_beside(tmp), _beside(library_path))
