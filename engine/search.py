"""Nearest-neighbour search over L2-normalised embeddings.

``ExactIndex`` is exact: every query against every vector, as one small ONNX graph (matrix
product + TopK, ``engine/models/exact_topk.onnx``) that ONNX Runtime runs multi-threaded, on
the GPU when the encoders are. Fast for libraries that fit in memory (40k x 256 float32 is
40 MB). An approximate index for millions of records only has to offer the same ``search``.
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


class ExactIndex:
    def __init__(self, vectors: np.ndarray, chunk_rows: int = 1024, device: str = "auto"):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.chunk_rows = chunk_rows  # bounds the (chunk, n) score matrix: 140 MB at 34,000 vectors
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
