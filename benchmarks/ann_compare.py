"""Approximate nearest-neighbour libraries compared on a library's own DNA embeddings (issue 16).

For usearch (HNSW; f16 and i8 scalar kinds), faiss (HNSW-Flat, IVF-Flat) and voyager (HNSW),
each built over the library's float16 embeddings in a child process (2 threads):
build time, the build's peak RSS, the saved file's size, its load time (memory-mapped / viewed
where the library can) and, at a few search-effort settings, the time of the queries (2
threads; the first run after loading, then again) and recall@10 against exact search
(engine.search.ExactIndex) -- both as the library returns them and after re-scoring 50
candidates exactly against the float16 embeddings, as engine.ann_index does.

Queries are barcodes embedded with the library's DNA model, as `identify` embeds them:

    .venv/bin/python benchmarks/ann_compare.py --library /work/scale/lib_1M.db \
        --queries /work/scale/queries_10k.tsv --work /work/tmp_ann/cmp1M [--section]

Work files (indexes, embeddings) go to --work, never the repository.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PYTHON = str(REPO / ".venv" / "bin" / "python")
K = 10
RESCORE = 50  # candidates re-scored exactly (engine.ann_index re-scores k * its factor)
THREADS = 2
ADD_BATCH = 100_000  # vectors converted and added at a time: the build reads the float16 matrix in slices

# name: (library, build parameters, search efforts)
VARIANTS: dict[str, tuple[str, dict, list[int]]] = {
    "usearch-f16-M16": ("usearch", {"dtype": "f16", "connectivity": 16, "expansion_add": 128}, [32, 64, 128, 256]),
    "usearch-i8-M16": ("usearch", {"dtype": "i8", "connectivity": 16, "expansion_add": 128}, [32, 64, 128, 256]),
    "usearch-f16-M32": ("usearch", {"dtype": "f16", "connectivity": 32, "expansion_add": 128}, [32, 64, 128, 256]),
    "usearch-i8-M32": ("usearch", {"dtype": "i8", "connectivity": 32, "expansion_add": 128}, [32, 64, 128, 256]),
    "faiss-HNSW32-Flat": ("faiss", {"kind": "hnsw", "M": 32, "efConstruction": 80}, [32, 64, 128, 256]),
    "faiss-HNSW32-SQfp16": ("faiss", {"kind": "HNSW32,SQfp16", "efConstruction": 80}, [32, 64, 128, 256]),
    "faiss-IVF-Flat": ("faiss", {"kind": "ivf"}, [8, 16, 32, 64]),
    "voyager-M16-f32": ("voyager", {"M": 16, "ef_construction": 128, "storage": "Float32"}, [32, 64, 128, 256]),
    "voyager-M16-e4m3": ("voyager", {"M": 16, "ef_construction": 128, "storage": "E4M3"}, [32, 64, 128, 256]),
}
EXTENSION = {"usearch": "usearch", "faiss": "faiss", "voyager": "voy"}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- workers
def _build(lib: str, params: dict, vectors: np.ndarray, path: Path, threads: int) -> None:
    n, dim = vectors.shape
    if lib == "usearch":
        from usearch.index import Index

        index = Index(ndim=dim, metric="cos" if params["dtype"] == "i8" else "ip", dtype=params["dtype"],
                      connectivity=params["connectivity"], expansion_add=params["expansion_add"])
        for start in range(0, n, ADD_BATCH):
            block = np.asarray(vectors[start: start + ADD_BATCH])
            index.add(np.arange(start, start + len(block), dtype=np.uint64), block, threads=threads)
        index.save(str(path))
    elif lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(threads)
        if params["kind"] == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params["efConstruction"]
        elif params["kind"].startswith("HNSW"):
            index = faiss.index_factory(dim, params["kind"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params["efConstruction"]
            index.train(np.asarray(vectors[:ADD_BATCH], dtype=np.float32))  # fp16: nothing to learn
        else:
            nlist = int(4 * np.sqrt(n))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)
            index.train(np.asarray(vectors[np.sort(sample)], dtype=np.float32))
        for start in range(0, n, ADD_BATCH):
            index.add(np.asarray(vectors[start: start + ADD_BATCH], dtype=np.float32))
        faiss.write_index(index, str(path))
    else:
        import voyager

        index = voyager.Index(voyager.Space.InnerProduct, num_dimensions=dim, M=params["M"],
                              ef_construction=params["ef_construction"], max_elements=n,
                              storage_data_type=getattr(voyager.StorageDataType, params["storage"]))
        for start in range(0, n, ADD_BATCH):
            block = np.asarray(vectors[start: start + ADD_BATCH], dtype=np.float32)
            index.add_items(block, ids=list(range(start, start + len(block))), num_threads=threads)
        index.save(str(path))


def _loader(lib: str, path: Path):
    """(loaded index, search(queries, k, effort) -> positions)."""
    if lib == "usearch":
        from usearch.index import Index

        index = Index.restore(str(path), view=True)

        def search(q, k, ef):
            index.expansion_search = max(ef, k)
            return np.asarray(index.search(q, k, threads=THREADS).keys, dtype=np.int64)
    elif lib == "faiss":
        import faiss

        faiss.omp_set_num_threads(THREADS)
        try:  # memory-maps the vectors (and, in faiss >= 1.12, the graph) instead of reading them
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError:  # not every index kind can be memory-mapped
            index = faiss.read_index(str(path))

        def search(q, k, ef):
            if hasattr(index, "hnsw"):
                index.hnsw.efSearch = max(ef, k)
            else:
                faiss.extract_index_ivf(index).nprobe = ef
            return index.search(q, k)[1].astype(np.int64)
    else:
        import voyager

        index = voyager.Index.load(str(path))

        def search(q, k, ef):
            return np.asarray(index.query(q, k, num_threads=THREADS, query_ef=max(ef, k))[0], dtype=np.int64)
    return index, search


def recall(got: np.ndarray, exact: np.ndarray) -> float:
    """The share of exact search's top k found (the same references)."""
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(got.tolist(), exact.tolist())]))


TIE = 1e-5  # similarities this close are equal: float16 rows scored in float32 by two different kernels


def recall_with_ties(got: np.ndarray, queries: np.ndarray, vectors: np.ndarray, exact_kth: np.ndarray) -> float:
    """The share of results as good as exact search's: a result counts when its exact similarity
    is at least the k-th best's (libraries hold identical barcodes, whose embeddings tie, and
    which of them the top k holds is arbitrary)."""
    sims = np.einsum("qd,qkd->qk", queries, np.asarray(vectors[np.sort(np.unique(got))], np.float32)[
        np.searchsorted(np.sort(np.unique(got)), got)])
    return float(np.mean(sims >= exact_kth[:, None] - TIE))


def rescored(queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """The best ``k`` of each query's candidates by exact similarity to the float16 vectors."""
    flat = np.unique(candidates[candidates >= 0])
    rows = np.asarray(vectors[flat], dtype=np.float32)
    where = np.searchsorted(flat, np.clip(candidates, 0, None))
    sims = np.einsum("qd,qcd->qc", queries, rows[where])
    sims[candidates < 0] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, 1)


def worker(args) -> int:
    lib, params, efforts = VARIANTS[args.variant]
    vectors = np.load(args.vectors, mmap_mode="r")
    path = args.work / f"{args.variant}.{EXTENSION[lib]}"
    if args.worker == "build":
        start = time.perf_counter()
        _build(lib, params, vectors, path, THREADS)
        print(json.dumps({"build_s": time.perf_counter() - start, "build_rss_mb": peak_rss_mb(),
                          "file_mb": path.stat().st_size / 2**20}))
        return 0
    queries = np.load(args.work / "queries.npy")
    exact = np.load(args.work / "exact.npy")
    exact_kth = np.load(args.work / "exact_sims.npy")[:, -1]
    start = time.perf_counter()
    index, search = _loader(lib, path)
    out = {"load_s": time.perf_counter() - start, "efforts": []}
    for ef in efforts:
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            got = search(queries, K, ef)
            runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        wide = search(queries, RESCORE, ef)
        best = rescored(queries, wide, vectors, K)
        out["efforts"].append({"ef": ef, "query_s": runs, "recall": recall(got, exact),
                               "recall_ties": recall_with_ties(got, queries, vectors, exact_kth),
                               "rescored_s": time.perf_counter() - t, "recall_rescored": recall(best, exact),
                               "recall_rescored_ties": recall_with_ties(best, queries, vectors, exact_kth)})
    out["rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- driver
def prepare(library: Path, queries_tsv: Path, n_queries: int, work: Path, references: int | None = None) -> dict:
    """Embed the queries, write the library's vectors where the workers read them, time exact search.
    ``references``: the first so many of the library's references only (a smaller library's worth)."""
    from engine.io import read_barcodes
    from engine.library import ReferenceLibrary
    from engine.models.dna_encoder import DnaEncoder
    from engine.qc import check_barcode
    from engine.resources import default_model_path
    from engine.search import ExactIndex

    lib = ReferenceLibrary.open(library)
    refs = lib.references("dna")
    matrix = refs.matrix if references is None else refs.matrix[:references]
    vec_path = work / f"vectors_{len(matrix)}.npy"
    if references is None and isinstance(refs.matrix, np.memmap) and refs.matrix.filename:
        vec_path = Path(refs.matrix.filename)  # the index folder's float16 matrix itself
    elif not vec_path.exists():
        np.save(vec_path, np.asarray(matrix, dtype=np.float16))
    seqs = [check_barcode(b.sequence).sequence for b in read_barcodes(queries_tsv)][:n_queries]
    q = DnaEncoder.from_path(default_model_path("dna")).embed(seqs)
    np.save(work / "queries.npy", q.astype(np.float32))
    exact = ExactIndex(matrix)
    t = time.perf_counter()
    sims, pos = exact.search(q, K)
    exact_s = time.perf_counter() - t
    np.save(work / "exact.npy", pos)
    np.save(work / "exact_sims.npy", sims)
    return {"references": len(matrix), "dim": int(matrix.shape[1]), "queries": len(q), "exact_s": exact_s,
            "vectors": str(vec_path)}


def run_worker(kind: str, variant: str, vectors: str, work: Path) -> dict:
    out = subprocess.run([PYTHON, __file__, "--worker", kind, "--variant", variant, "--vectors", vectors,
                          "--work", str(work)], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
    if out.returncode != 0:
        raise SystemExit(f"{kind} of {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(setup: dict, results: dict) -> str:
    rows = [
        f"{setup['references']:,} references of {setup['dim']} dimensions (float16), {setup['queries']:,} queries; "
        f"2 threads. Exact search (ExactIndex): {setup['exact_s']:.1f} s. Query times: first run after loading, "
        f"then again; recall@10 against exact, as returned and after re-scoring {RESCORE} candidates exactly "
        "against the float16 embeddings (its time includes the search for them). Files freshly written, so "
        "loading reads from the page cache. `benchmarks/ann_compare.py`.",
        "",
        "| index | build | build peak RSS | file | load | effort | 1,000 queries | recall@10 | re-scored: time, recall@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        b, q = r["build"], r["query"]
        for j, e in enumerate(q["efforts"]):
            head = (f"| {name} | {b['build_s']:.0f} s | {b['build_rss_mb'] / 1024:.2f} GB | {b['file_mb']:.0f} MB | "
                    f"{q['load_s'] * 1000:.0f} ms" if j == 0 else "| | | | |")
            rows.append(f"{head} | {e['ef']} | {e['query_s'][0]:.2f} s, {e['query_s'][1]:.2f} s | {e['recall']:.4f} | "
                        f"{e['rescored_s']:.2f} s, {e['recall_rescored']:.4f} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path)
    ap.add_argument("--queries", type=Path, help="barcodes (BOLD package / TSV) to embed as queries")
    ap.add_argument("--n-queries", type=int, default=1000)
    ap.add_argument("--references", type=int, help="compare on the library's first N references only")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bioscan-ann"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--section", action="store_true", help="write the table to docs/benchmarks.md")
    ap.add_argument("--worker", choices=["build", "query"], help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--vectors", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.worker:
        return worker(args)
    setup = prepare(args.library, args.queries, args.n_queries, args.work, args.references)
    print(json.dumps(setup), flush=True)
    results = {}
    for variant in args.variants.split(","):
        results[variant] = {"build": run_worker("build", variant, setup["vectors"], args.work)}
        results[variant]["query"] = run_worker("query", variant, setup["vectors"], args.work)
        print(variant, json.dumps(results[variant]), flush=True)
        (args.work / f"{variant}.{EXTENSION[VARIANTS[variant][0]]}").unlink(missing_ok=True)  # GBs at 1M
    (args.work / "results.json").write_text(json.dumps({"setup": setup, "results": results}, indent=1))
    print(table(setup, results))
    if args.section:
        from benchmarks.dna_identify import write_section

        write_section(f"Approximate index: comparison at {setup['references']:,} references", table(setup, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
