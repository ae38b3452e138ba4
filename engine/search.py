"""Nearest-neighbour search over L2-normalised embeddings.

``ExactIndex`` is exact: every query against every vector, as one small ONNX graph (matrix
product + TopK, ``engine/models/exact_topk.onnx``) that ONNX Runtime runs multi-threaded, on
the GPU when the encoders are; the queries are taken in chunks whose scores stay within
SCORE_MATRIX_BYTES, and a float16 (memory-mapped) matrix a block of references at a time.

Libraries of millions search an approximate index behind the same ``search``
(``VectorIndex``): engine.ann_index's HNSW graph, saved with the library's index folder; its
speed and recall against ExactIndex are in docs/benchmarks.md.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, indices), each (n_queries, k), best first."""


TOPK_GRAPH = Path(__file__).resolve().parent / "models" / "exact_topk.onnx"


SCORE_MATRIX_BYTES = 256 * 2**20  # the (queries, references) float32 scores computed at once


REFERENCE_BLOCK_BYTES = 256 * 2**20  # float32 references converted at once from a float16 (memory-mapped) matrix


def read_rows(vectors: np.ndarray, start: int, stop: int, dtype: np.dtype | type | None = np.float32) -> np.ndarray:
    """Rows ``start:stop`` of ``vectors`` as ``dtype`` (None: as stored). From a memory-mapped
    file (np.load's mmap_mode) the rows are read from the file instead: pages read through a
    mapping stay in the process's resident memory, and a pass over millions of references would
    map them all."""
    stop = min(stop, len(vectors))
    if _file_backed(vectors) and stop > start:
        row_bytes = vectors.strides[0]
        with open(vectors.filename, "rb") as f:
            f.seek(vectors.offset + start * row_bytes)
            rows = np.fromfile(f, dtype=vectors.dtype, count=(stop - start) * vectors.shape[1])
        rows = rows.reshape(stop - start, vectors.shape[1])
        return rows if dtype is None else rows.astype(dtype, copy=False)
    return np.ascontiguousarray(vectors[start: stop], dtype=dtype)


def _file_backed(vectors: np.ndarray) -> bool:
    return (isinstance(vectors, np.memmap) and isinstance(vectors.base, mmap.mmap) and bool(vectors.filename)
            and vectors.flags.c_contiguous)


def gather_rows(vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows at ``positions`` (any order) as float32. From a memory-mapped file each row is read
    through the file: a page faulted in through a mapping brings its whole page-cache folio (up
    to 2 MB on current kernels) into the process's resident memory, so a few thousand scattered
    rows held most of a 2.5 GB embedding file. A read costs a few microseconds a row, so this is
    for scattered rows off the hot path (calibration's sampled queries), not for every candidate."""
    positions = np.asarray(positions, dtype=np.int64)
    if not _file_backed(vectors) or len(positions) == 0:
        return np.asarray(vectors[positions], dtype=np.float32)
    row_bytes = vectors.strides[0]
    buffer = bytearray(len(positions) * row_bytes)
    view = memoryview(buffer)
    fd = os.open(vectors.filename, os.O_RDONLY)
    try:
        for n, position in enumerate(positions.tolist()):
            if not 0 <= position < len(vectors):
                raise IndexError(f"row {position} of {len(vectors)}")
            os.preadv(fd, [view[n * row_bytes: (n + 1) * row_bytes]], vectors.offset + position * row_bytes)
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype=vectors.dtype).reshape(len(positions), vectors.shape[1]).astype(np.float32)


def merge_top_k(sims: list[np.ndarray], positions: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several searches' (n, k_i) results, best first; ties by position, as one
    search over all references would order them."""
    s, i = np.concatenate(sims, axis=1), np.concatenate(positions, axis=1)
    order = np.lexsort((i, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


class ExactIndex:
    """Exact search. A float32 matrix is searched as it is; any other (the float16, memory-mapped
    embeddings of a large library, or rows of several libraries) a block of references at a time,
    converted to float32 for the block and merged top-k by top-k, so memory stays bounded at any
    library size."""

    def __init__(self, vectors: np.ndarray, chunk_rows: int = 1024, device: str = "auto"):
        self.in_blocks = not (isinstance(vectors, np.ndarray) and vectors.dtype == np.float32
                              and vectors.flags.c_contiguous)
        self.vectors = vectors
        dim = vectors.shape[1] if vectors.ndim == 2 else 1
        self.block_rows = max(1, REFERENCE_BLOCK_BYTES // (4 * dim)) if self.in_blocks else max(1, len(vectors))
        # queries per run, bounded so the (chunk, references) score matrix stays within SCORE_MATRIX_BYTES:
        # 1024 rows at 34,000 references (140 MB), 67 at a million (a 1024-row chunk would be 4 GB)
        rows = min(len(self.vectors), self.block_rows)
        self.chunk_rows = max(1, min(chunk_rows, SCORE_MATRIX_BYTES // (4 * max(1, rows))))
        self.device = device
        self._session = None

    def __len__(self) -> int:
        return len(self.vectors)

    def _run(self, queries: np.ndarray, refs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._session.run(None, {"queries": queries[start: start + self.chunk_rows], "references": refs,
                                          "k": np.array([k], dtype=np.int64)})
                 for start in range(0, len(queries), self.chunk_rows)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        k = min(k, len(self.vectors))
        if k == 0 or n == 0:
            return np.zeros((n, k), dtype=np.float32), np.zeros((n, k), dtype=np.int64)
        if self._session is None:
            from engine.models.runtime import create_session

            self._session = create_session(TOPK_GRAPH, self.device)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.in_blocks:
            return self._run(queries, self.vectors, k)
        best_s = best_i = None
        for start in range(0, len(self.vectors), self.block_rows):
            block = read_rows(self.vectors, start, start + self.block_rows)
            s, i = self._run(queries, block, min(k, len(block)))
            i += start
            best_s, best_i = (s, i) if best_s is None else merge_top_k([best_s, s], [best_i, i], k)
        return best_s, best_i
