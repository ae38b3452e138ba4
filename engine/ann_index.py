"""Approximate nearest-neighbour search for large libraries (issue 16).

HNSW graphs (faiss) over a modality's embeddings, built once when a large library is built or
extended and saved in its index folder (``<library>.index/<modality>/``): the references in
shards of at most SHARD_REFERENCES by position, one graph a shard (``ann-000.faiss``, ...),
every shard coded with one trained coder (``ann-coder.faiss``: the 8-bit ranges, learnt once),
and ``ann.json`` with the folder's stamp and each shard's place, size and fingerprint. A shard
bounds the memory a build needs to one shard's graph at any library size, keeps the search
effort a shard needs the same however large the library grows, and lets an extended library
keep the graphs of the shards whose rows did not change (``reuse``). Opening views the graphs
memory-mapped, so a library of millions opens in a moment. Graphs whose stamp is not the
library's state are never used: the library then searches exactly (engine.search.ExactIndex)
until they are rebuilt.

The graphs only propose candidates: each shard's best ``k * RESCORE_FACTOR`` by the graph,
the best of them over all shards by the graph's (8-bit) similarity, are re-scored exactly
against the library's float16 embeddings and the best ``k`` returned, so the similarities are
those exact search gives and only the recall is approximate. Why faiss, and its settings, is
measured by benchmarks/ann_compare.py and benchmarks/library_scale.py (recall, speed, memory,
build time).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
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
ANN_META = "ann.json"
CODER_FILE = "ann-coder.faiss"  # the trained, empty graph every shard starts from
LEGACY_FILE = "ann.faiss"  # format 1: one graph over the whole library
ANN_FORMAT = "2"
# graph settings (benchmarks/ann_compare.py)
# faiss.index_factory: 32 neighbours a node, vectors coded in 8 bits a dimension. float16 codes
# (as the library keeps them) found the same candidates but doubled the graph's memory
FACTORY = "HNSW32,SQ8"
# references a graph: the build holds one shard's graph in memory (32 links and 256 one-byte
# codes a reference), and recall@10 at this size was >= 0.99 at the search effort below
SHARD_REFERENCES = 1_000_000
TRAIN_ROWS = 100_000  # rows the 8-bit coding's ranges are learnt from, in runs spread over the library
EF_CONSTRUCTION = 80
EF_SEARCH = 256  # each shard's search effort (raised to the candidates asked for)
RESCORE_FACTOR = 2  # candidates re-scored exactly per result asked for
ADD_BATCH = 20_000  # vectors added between two progress reports
RESCORE_BYTES = 64 * 2**20  # float32 candidate rows gathered at once for re-scoring
FINGERPRINT_ROWS = 65_536  # rows hashed at once


def shard_file(number: int) -> str:
    return f"ann-{number:03d}.faiss"


def _meta(stamp: dict, count: int, shards: list[dict], shard_references: int) -> dict:
    import faiss

    return {"format": ANN_FORMAT, "stamp": stamp, "count": count, "shards": shards,
            "shard_references": shard_references, "library": "faiss", "version": faiss.__version__,
            "factory": FACTORY, "ef_construction": EF_CONSTRUCTION}


def fingerprint(vectors: np.ndarray, start: int, stop: int) -> str:
    """sha1 of rows ``start:stop`` as stored: a shard's graph serves another state of the
    library only if these bytes are the same."""
    digest = hashlib.sha1()
    for first in range(start, stop, FINGERPRINT_ROWS):
        digest.update(read_rows(vectors, first, min(stop, first + FINGERPRINT_ROWS), dtype=None).tobytes())
    return digest.hexdigest()


class AnnIndex:
    """engine.search.VectorIndex over faiss graphs, one a shard of ``vectors`` (``shards``: each
    graph with the position of its first row), their candidates re-scored exactly."""

    def __init__(self, shards: list[tuple[object, int]], vectors: np.ndarray, expansion: int = EF_SEARCH,
                 rescore_factor: int = RESCORE_FACTOR):
        self.shards = shards
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
        scores, candidates = [], []
        for graph, first in self.shards:
            take = min(wanted, graph.ntotal)
            graph.hnsw.efSearch = max(self.expansion, take)
            s, found = graph.search(queries, take)
            found = found.astype(np.int64, copy=False)
            # -1: fewer found than asked for; past the shard: a damaged graph's
            bad = (found < 0) | (found >= graph.ntotal)
            s[bad] = -np.inf
            scores.append(s)
            candidates.append(np.where(bad, -1, found + first))
        score, candidate = np.concatenate(scores, axis=1), np.concatenate(candidates, axis=1)
        if len(self.shards) > 1:  # the shards' best by the graphs' own similarity (one coder: comparable)
            best = np.argsort(-score, axis=1, kind="stable")[:, :wanted]
            candidate = np.take_along_axis(candidate, best, 1)
        missing = candidate < 0
        candidate[missing] = 0
        return self._rescored(queries, candidate, missing, k)

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


def _well_formed(shards: object) -> bool:
    """Whether ``ann.json``'s shard list is one a reader can trust the fields of."""
    return isinstance(shards, list) and bool(shards) and all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and "/" not in s["file"]
        and all(isinstance(s.get(f), int) for f in ("start", "count", "bytes")) for s in shards)


def ann_state(folder: Path, stamp: dict) -> str:
    """'fresh', or why the folder's graphs cannot be used ('absent', 'stale', 'damaged: ...')."""
    meta_path = folder / ANN_META
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return "absent"
    except (OSError, ValueError) as exc:
        return f"damaged: {meta_path.name} unreadable ({exc})"
    if not isinstance(meta, dict) or meta.get("format") != ANN_FORMAT or meta.get("stamp") != stamp:
        return "stale"
    shards = meta.get("shards")
    if not _well_formed(shards) or sum(s["count"] for s in shards) != stamp.get("count"):
        return f"damaged: {meta_path.name} does not place the {stamp.get('count')} references in shards"
    for shard in shards:
        try:
            size = (folder / shard["file"]).stat().st_size
        except OSError:
            return f"damaged: {shard['file']} missing"
        if size != shard.get("bytes"):
            return f"damaged: {shard['file']} is {size} bytes, {shard.get('bytes')} were written"
    return "fresh"


def _read_graph(path: Path, mmap: bool = True):
    import faiss

    try:  # the codes memory-mapped, not read
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC) if mmap else faiss.read_index(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise LibraryError(f"the approximate index {path} is damaged ({str(exc).splitlines()[0]})") from exc


def open_ann(folder: Path, stamp: dict, vectors: np.ndarray) -> AnnIndex:
    """The folder's graphs for ``stamp``, viewed (memory-mapped); LibraryError saying why when
    they are absent, stale or damaged (the caller then searches exactly)."""
    state = ann_state(folder, stamp)
    if state != "fresh":
        raise LibraryError(f"the approximate index in {folder} is {state}")
    shards = []
    placed = 0
    for shard in json.loads((folder / ANN_META).read_text())["shards"]:
        path = folder / shard["file"]
        graph = _read_graph(path)
        if (not hasattr(graph, "hnsw") or graph.ntotal != shard["count"] or shard["start"] != placed
                or graph.d != vectors.shape[1]):
            raise LibraryError(f"the approximate index {path} is damaged (it does not hold references "
                               f"{shard['start']}-{shard['start'] + shard['count']} of the library)")
        shards.append((graph, placed))
        placed += shard["count"]
    if placed != len(vectors):
        raise LibraryError(f"the approximate index in {folder} is damaged (it does not hold the "
                           f"{len(vectors)} references of the library)")
    return AnnIndex(shards, vectors)


def _training_sample(vectors: np.ndarray, runs: int = 20) -> np.ndarray:
    """About TRAIN_ROWS rows in ``runs`` contiguous runs spread evenly over ``vectors`` (read as
    runs, not row by row: a memory-mapped library is read in a few large reads)."""
    n = len(vectors)
    if n <= TRAIN_ROWS:
        return read_rows(vectors, 0, n)
    step = TRAIN_ROWS // runs
    starts = np.linspace(0, n - step, runs).astype(np.int64)
    return np.concatenate([read_rows(vectors, int(s), int(s) + step) for s in starts])


def _reusable(reuse: Path | None, dim: int, shard_references: int) -> tuple[object | None, dict[int, dict]]:
    """The coder and the full shards (by number) of an earlier build in ``reuse`` that a new
    build may keep when their rows are unchanged; (None, {}) when there is none to keep."""
    if reuse is None:
        return None, {}
    try:
        meta = json.loads((reuse / ANN_META).read_text())
        if (not isinstance(meta, dict) or meta.get("format") != ANN_FORMAT
                or meta.get("shard_references") != shard_references or not _well_formed(meta.get("shards"))):
            return None, {}
        coder = _read_graph(reuse / CODER_FILE, mmap=False)
    except (OSError, ValueError, LibraryError):
        return None, {}
    if coder.d != dim or coder.ntotal != 0:
        return None, {}
    shards = {}
    for number, shard in enumerate(meta["shards"]):
        path = reuse / shard["file"]
        if (shard["count"] == shard_references and shard["start"] == number * shard_references
                and path.is_file() and path.stat().st_size == shard["bytes"]):
            try:
                if _read_graph(path).ntotal == shard_references:
                    shards[number] = shard
            except LibraryError:  # damaged: built again
                pass
    return coder, shards


def _keep(source: Path, target: Path) -> None:
    """``source``'s file at ``target``, whole: linked where the file system allows, else copied."""
    if source == target:
        return
    with atomic_output(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def build_ann(folder: Path, stamp: dict, vectors: np.ndarray, progress: ProgressCallback = None,
              reuse: Path | None = None, shard_references: int | None = None) -> AnnIndex:
    """Build the graphs over ``vectors`` (the folder's embeddings for ``stamp``), one a shard of
    ``shard_references`` (SHARD_REFERENCES), save them and their parameters whole or not at all, and return them
    opened from the files. ``reuse``: the folder of an earlier build of the same library (by
    default ``folder`` itself), whose coder and unchanged full shards are kept, not rebuilt."""
    import faiss

    shard_references = shard_references or SHARD_REFERENCES
    n, dim = vectors.shape
    folder.mkdir(parents=True, exist_ok=True)
    coder, earlier = _reusable(folder if reuse is None else reuse, dim, shard_references)
    (folder / ANN_META).unlink(missing_ok=True)  # first: graphs without their stamp are never used
    if coder is None:
        coder = faiss.index_factory(dim, FACTORY, faiss.METRIC_INNER_PRODUCT)
        if not coder.is_trained:  # the coding's ranges, learnt from the whole library, not its first records
            coder.train(_training_sample(vectors))
        with atomic_output(folder / CODER_FILE) as tmp:
            faiss.write_index(coder, str(tmp))
    else:
        _keep((reuse or folder) / CODER_FILE, folder / CODER_FILE)
    message = "indexing references for fast search"
    report(progress, 0, n, message)
    shards = []
    for number, first in enumerate(range(0, n, shard_references)):
        stop = min(n, first + shard_references)
        kept = earlier.get(number)
        if kept is not None and kept.get("fingerprint") == fingerprint(vectors, first, stop):
            _keep((reuse or folder) / kept["file"], folder / shard_file(number))
            shards.append({**kept, "file": shard_file(number)})
            report(progress, stop, n, message)
            continue
        graph = faiss.clone_index(coder)
        graph.hnsw.efConstruction = EF_CONSTRUCTION
        digest = hashlib.sha1()  # the shard's fingerprint, from the rows as they are added
        for start in range(first, stop, ADD_BATCH):
            stored = read_rows(vectors, start, min(stop, start + ADD_BATCH), dtype=None)
            digest.update(stored.tobytes())
            graph.add(stored.astype(np.float32, copy=False))
            report(progress, min(stop, start + ADD_BATCH), n, message)
        mark = digest.hexdigest()
        with atomic_output(folder / shard_file(number)) as tmp:
            faiss.write_index(graph, str(tmp))
            size = os.path.getsize(tmp)
        del graph
        shards.append({"file": shard_file(number), "start": first, "count": stop - first, "bytes": size,
                       "fingerprint": mark})
    used = {s["file"] for s in shards}
    for old in [*folder.glob("ann-[0-9]*.faiss"), folder / LEGACY_FILE]:
        if old.name not in used:
            old.unlink(missing_ok=True)
    with atomic_output(folder / ANN_META) as tmp:
        tmp.write_text(json.dumps(_meta(stamp, n, shards, shard_references)))
    return open_ann(folder, stamp, vectors)
