"""Approximate nearest-neighbour search for large libraries (issue 16).

An HNSW graph (usearch) over a modality's embeddings, built once when a large library is built
or extended and saved in its index folder (``<library>.index/<modality>/ann.usearch``, with
``ann.json``: the folder's stamp and the graph's parameters). Opening it is a view of the file
(memory-mapped, nothing read up front), so a library of millions opens as fast as a small one.
A graph whose stamp is not the library's state is never used: the library then searches
exactly (engine.search.ExactIndex) until the graph is rebuilt.

The graph only proposes candidates: each query's best ``k * RESCORE_FACTOR`` by the graph are
re-scored exactly against the library's float16 embeddings and the best ``k`` of them
returned, so the similarities are those exact search gives and only the recall is approximate.
Why usearch, and its settings: docs/benchmarks.md, "Approximate index: comparison".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engine.atomic import atomic_output
from engine.errors import LibraryError
from engine.progress import ProgressCallback, report

# libraries of this many references or more search the graph; smaller ones exactly: below it
# exact search of a batch costs about what the graph's build costs a build (docs/benchmarks.md,
# "Approximate index: comparison")
ANN_MIN_REFERENCES = 200_000
ANN_FILE = "ann.usearch"
ANN_META = "ann.json"
ANN_FORMAT = "1"
# graph settings (docs/benchmarks.md, "Approximate index: comparison")
SCALAR_KIND = "f16"  # as the library stores its embeddings
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128  # the graph's search effort; raised to the candidates asked for
RESCORE_FACTOR = 2  # candidates re-scored exactly per result asked for
ADD_BATCH = 20_000  # vectors added between two progress reports
RESCORE_BYTES = 64 * 2**20  # float32 candidate rows gathered at once for re-scoring


def _meta(stamp: dict, count: int, size: int) -> dict:
    import usearch

    return {"format": ANN_FORMAT, "stamp": stamp, "count": count, "bytes": size, "library": "usearch",
            "version": usearch.__version__, "scalar_kind": SCALAR_KIND, "connectivity": CONNECTIVITY,
            "expansion_add": EXPANSION_ADD}


class AnnIndex:
    """engine.search.VectorIndex over a usearch graph, its candidates re-scored exactly against
    ``vectors`` (position i of the graph is row i of ``vectors``)."""

    def __init__(self, graph, vectors: np.ndarray, expansion: int = EXPANSION_SEARCH,
                 rescore_factor: int = RESCORE_FACTOR):
        self.graph = graph
        self.vectors = vectors
        self.expansion = expansion
        self.rescore_factor = rescore_factor

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        k = min(k, len(self))
        if k == 0 or n == 0:
            return np.zeros((n, k), dtype=np.float32), np.zeros((n, k), dtype=np.int64)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        wanted = min(len(self), k * self.rescore_factor)
        self.graph.expansion_search = max(self.expansion, wanted)
        found = self.graph.search(queries, wanted, threads=0)  # 0: every core
        candidates = np.asarray(found.keys, dtype=np.int64).reshape(n, wanted)
        # slots past a query's count are padding; keys past the vectors would be a damaged graph's
        missing = (np.arange(wanted)[None, :] >= np.asarray(found.counts).reshape(n, 1)) | (candidates >= len(self))
        candidates[missing] = 0
        return self._rescored(queries, candidates, missing, k)

    def _rescored(self, queries: np.ndarray, candidates: np.ndarray, missing: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
        n, wanted = candidates.shape
        dim = self.vectors.shape[1]
        step = max(1, RESCORE_BYTES // (4 * wanted * dim))
        sims = np.empty((n, wanted), dtype=np.float32)
        for start in range(0, n, step):
            part = candidates[start: start + step]
            order = np.argsort(part, axis=None)  # sorted reads of the memory-mapped rows
            rows = np.empty((part.size, dim), dtype=np.float32)
            rows[order] = self.vectors[part.ravel()[order]]
            sims[start: start + step] = np.einsum("qd,qcd->qc", queries[start: start + step],
                                                  rows.reshape(len(part), wanted, dim))
        sims[missing] = -np.inf
        best = np.lexsort((candidates, -sims), axis=1)[:, :k]  # ties by position, as exact search orders them
        return np.take_along_axis(sims, best, 1), np.take_along_axis(candidates, best, 1)


def _paths(folder: Path) -> tuple[Path, Path]:
    return folder / ANN_FILE, folder / ANN_META


def ann_state(folder: Path, stamp: dict) -> str:
    """'fresh', or why the folder's graph cannot be used ('absent', 'stale', 'damaged: ...')."""
    graph, meta_path = _paths(folder)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return "absent"
    except (OSError, ValueError) as exc:
        return f"damaged: {meta_path.name} unreadable ({exc})"
    if meta.get("format") != ANN_FORMAT or meta.get("stamp") != stamp:
        return "stale"
    try:
        size = graph.stat().st_size
    except OSError:
        return f"damaged: {graph.name} missing"
    if size != meta.get("bytes"):
        return f"damaged: {graph.name} is {size} bytes, {meta.get('bytes')} were written"
    return "fresh"


def open_ann(folder: Path, stamp: dict, vectors: np.ndarray) -> AnnIndex:
    """The folder's graph for ``stamp``, viewed (memory-mapped); LibraryError saying why when it
    is absent, stale or damaged (the caller then searches exactly)."""
    state = ann_state(folder, stamp)
    if state != "fresh":
        raise LibraryError(f"the approximate index in {folder} is {state}")
    from usearch.index import Index

    graph_path = _paths(folder)[0]
    try:
        graph = Index.restore(str(graph_path), view=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise LibraryError(f"the approximate index {graph_path} is damaged ({exc})") from exc
    if graph is None or len(graph) != len(vectors) or graph.ndim != vectors.shape[1]:
        raise LibraryError(f"the approximate index {graph_path} is damaged (it does not hold the "
                           f"{len(vectors)} references of the library)")
    return AnnIndex(graph, vectors)


def build_ann(folder: Path, stamp: dict, vectors: np.ndarray, progress: ProgressCallback = None) -> AnnIndex:
    """Build the graph over ``vectors`` (the folder's embeddings for ``stamp``), save it and its
    parameters whole or not at all, and return it opened from the file."""
    from usearch.index import Index

    n, dim = vectors.shape
    graph = Index(ndim=dim, metric="ip", dtype=SCALAR_KIND, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)
    report(progress, 0, n, "indexing references for fast search")
    for start in range(0, n, ADD_BATCH):
        block = np.asarray(vectors[start: start + ADD_BATCH], dtype=np.float16)
        graph.add(np.arange(start, start + len(block), dtype=np.uint64), block, threads=0)
        report(progress, start + len(block), n, "indexing references for fast search")
    graph_path, meta_path = _paths(folder)
    meta_path.unlink(missing_ok=True)  # first: a graph without its stamp is never used
    with atomic_output(graph_path) as tmp:
        graph.save(str(tmp))
        size = os.path.getsize(tmp)
    del graph
    with atomic_output(meta_path) as tmp:
        tmp.write_text(json.dumps(_meta(stamp, n, size)))
    return open_ann(folder, stamp, vectors)
