"""Nearest-neighbour search over L2-normalised embeddings.

``ExactIndex`` is a chunked matrix product: exact, and fast for libraries that fit in
memory (40k x 256 float32 is 40 MB). An approximate index for millions of records only
has to offer the same ``search`` method.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, indices), each (n_queries, k), best first."""


class ExactIndex:
    def __init__(self, vectors: np.ndarray, chunk_rows: int = 1024):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.chunk_rows = chunk_rows

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        k = min(k, len(self.vectors))
        sims = np.zeros((n, k), dtype=np.float32)
        idx = np.zeros((n, k), dtype=np.int64)
        if k == 0:
            return sims, idx
        for start in range(0, n, self.chunk_rows):
            s = np.asarray(queries[start : start + self.chunk_rows], dtype=np.float32) @ self.vectors.T
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            part_s = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-part_s, axis=1, kind="stable")
            idx[start : start + len(s)] = np.take_along_axis(part, order, axis=1)
            sims[start : start + len(s)] = np.take_along_axis(part_s, order, axis=1)
        return sims, idx
