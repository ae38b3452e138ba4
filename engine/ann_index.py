"""Approximate nearest-neighbour search for large libraries (issue 16).

An HNSW graph (faiss) over a modality's embeddings, built once when a large library is built
or extended and saved in its index folder (``<library>.index/<modality>/ann.faiss``, with
``ann.json``: the folder's stamp and the graph's parameters). Opening it reads the graph and
memory-maps the embeddings it holds (float16), so a library of millions opens in a moment.
A graph whose stamp is not the library's state is never used: the library then searches
exactly (engine.search.ExactIndex) until the graph is rebuilt.

The graph only proposes candidates: each query's best ``k * RESCORE_FACTOR`` by the graph are
re-scored exactly against the library's float16 embeddings and the best ``k`` of them
returned, so the similarities are those exact search gives and only the recall is approximate.
Why faiss, and its settings, is measured by benchmarks/ann_compare.py (recall, speed, memory, build time).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engine.atomic import atomic_output
from engine.errors import LibraryError
from engine.progress import ProgressCallback, report
from engine.search import read_rows

# libraries of this many references or more search the graph, smaller ones exactly. At 100,000
# exact search of 1,000 queries already takes ten times the graph's time, and building the graph
# adds a small part to the library's build (benchmarks/ann_compare.py);
# smaller libraries keep no index folder for it, and exact search is a small part of an identify
ANN_MIN_REFERENCES = 100_000
ANN_FILE = "ann.faiss"
ANN_META = "ann.json"
ANN_FORMAT = "1"
# graph settings (benchmarks/ann_compare.py)
# faiss.index_factory: 32 neighbours a node, vectors coded in 8 bits a dimension. float16 codes
# (as the library keeps them) found the same candidates but doubled the graph's memory, which
# at 5 M references put the build over 3 GB (docs/benchmarks.md, library at scale)
FACTORY = "HNSW32,SQ8"
TRAIN_ROWS = 100_000  # rows the 8-bit coding's ranges are learnt from, in runs spread over the library
EF_CONSTRUCTION = 80
EF_SEARCH = 1024  # the graph's search effort (raised to the candidates asked for): recall@10 >= 0.99 at 5 M references
RESCORE_FACTOR = 2  # candidates re-scored exactly per result asked for
ADD_BATCH = 20_000  # vectors added between two progress reports
RESCORE_BYTES = 64 * 2**20  # float32 candidate rows gathered at once for re-scoring


def _meta(stamp: dict, count: int, size: int) -> dict:
    import faiss

    return {"format": ANN_FORMAT, "stamp": stamp, "count": count, "bytes": size, "library": "faiss",
            "version": faiss.__version__, "factory": FACTORY, "ef_construction": EF_CONSTRUCTION}


class AnnIndex:
    """engine.search.VectorIndex over a faiss graph, its candidates re-scored exactly against
    ``vectors`` (position i of the graph is row i of ``vectors``)."""

    def __init__(self, graph, vectors: np.ndarray, expansion: int = EF_SEARCH,
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
        self.graph.hnsw.efSearch = max(self.expansion, wanted)
        candidates = self.graph.search(queries, wanted)[1].astype(np.int64, copy=False)
        # -1: fewer found than asked for; past the vectors: a damaged graph's
        missing = (candidates < 0) | (candidates >= len(self))
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
    import faiss

    graph_path = _paths(folder)[0]
    try:  # the float16 codes memory-mapped, not read
        graph = faiss.read_index(str(graph_path), faiss.IO_FLAG_MMAP_IFC)
    except (RuntimeError, ValueError, OSError) as exc:
        raise LibraryError(f"the approximate index {graph_path} is damaged ({str(exc).splitlines()[0]})") from exc
    if not hasattr(graph, "hnsw") or graph.ntotal != len(vectors) or graph.d != vectors.shape[1]:
        raise LibraryError(f"the approximate index {graph_path} is damaged (it does not hold the "
                           f"{len(vectors)} references of the library)")
    return AnnIndex(graph, vectors)


def _training_sample(vectors: np.ndarray, runs: int = 20) -> np.ndarray:
    """About TRAIN_ROWS rows in ``runs`` contiguous runs spread evenly over ``vectors`` (read as
    runs, not row by row: a memory-mapped library is read in a few large reads)."""
    n = len(vectors)
    if n <= TRAIN_ROWS:
        return read_rows(vectors, 0, n)
    step = TRAIN_ROWS // runs
    starts = np.linspace(0, n - step, runs).astype(np.int64)
    return np.concatenate([read_rows(vectors, int(s), int(s) + step) for s in starts])


def build_ann(folder: Path, stamp: dict, vectors: np.ndarray, progress: ProgressCallback = None) -> AnnIndex:
    """Build the graph over ``vectors`` (the folder's embeddings for ``stamp``), save it and its
    parameters whole or not at all, and return it opened from the file."""
    import faiss

    n, dim = vectors.shape
    graph = faiss.index_factory(dim, FACTORY, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    if not graph.is_trained:  # the coding's ranges, learnt from the whole library, not its first records
        graph.train(_training_sample(vectors))
    report(progress, 0, n, "indexing references for fast search")
    for start in range(0, n, ADD_BATCH):
        graph.add(read_rows(vectors, start, start + ADD_BATCH))
        report(progress, min(n, start + ADD_BATCH), n, "indexing references for fast search")
    graph_path, meta_path = _paths(folder)
    meta_path.unlink(missing_ok=True)  # first: a graph without its stamp is never used
    with atomic_output(graph_path) as tmp:
        faiss.write_index(graph, str(tmp))
        size = os.path.getsize(tmp)
    del graph
    with atomic_output(meta_path) as tmp:
        tmp.write_text(json.dumps(_meta(stamp, n, size)))
    return open_ann(folder, stamp, vectors)
