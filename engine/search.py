"""Nearest-neighbour search over L2-normalised embeddings.

``ExactIndex`` is exact: every query against every vector, as one small ONNX graph (matrix
product + TopK, ``engine/models/exact_topk.onnx``) that ONNX Runtime runs multi-threaded, on
the GPU when the encoders are. Fast for libraries that fit in memory (40k x 256 float32 is
40 MB): at a million references (1 GB) it takes 3.3 ms a query on 2 cores (2,000 queries in
6.6 s), the queries taken in chunks so their scores stay within SCORE_MATRIX_BYTES.

An approximate index for many millions of records only has to offer the same ``search``
(``VectorIndex``). knncolle's HNSW (installed with scranpy) was measured for it: 87 s to
build over 100,000 vectors on 2 cores, and it cannot be saved with the library, so it would
be rebuilt at every start; exact search stays the default until a library outgrows memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, indices), each (n_queries, k), best first."""


TOPK_GRAPH = Path(__file__).resolve().parent / "models" / "exact_topk.onnx"


SCORE_MATRIX_BYTES = 256 * 2**20  # the (queries, references) float32 scores computed at once


class ExactIndex:
    def __init__(self, vectors: np.ndarray, chunk_rows: int = 1024, device: str = "auto"):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # queries per run, bounded so the (chunk, n) score matrix stays within SCORE_MATRIX_BYTES:
        # 1024 rows at 34,000 references (140 MB), 67 at a million (a 1024-row chunk would be 4 GB)
        self.chunk_rows = max(1, min(chunk_rows, SCORE_MATRIX_BYTES // (4 * max(1, len(self.vectors)))))
        self.device = device
        self._session = None

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        k = min(k, len(self.vectors))
        if k == 0 or n == 0:
            return np.zeros((n, k), dtype=np.float32), np.zeros((n, k), dtype=np.int64)
        if self._session is None:
            from engine.models.runtime import create_session

            self._session = create_session(TOPK_GRAPH, self.device)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = [self._session.run(None, {"queries": queries[start: start + self.chunk_rows],
                                          "references": self.vectors, "k": np.array([k], dtype=np.int64)})
                 for start in range(0, n, self.chunk_rows)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
