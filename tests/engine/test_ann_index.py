"""The approximate index of large libraries: recall against exact search, saved and viewed
again unchanged, never used when stale or damaged, and built by a library build."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the approximate index needs faiss-cpu")

import engine.library  # noqa: E402
import engine.ann_index  # noqa: E402
from engine.ann_index import ANN_META, CODER_FILE, AnnIndex, build_ann, open_ann, shard_file  # noqa: E402
from engine.errors import LibraryError  # noqa: E402
from engine.library import ReferenceLibrary  # noqa: E402
from engine.search import ExactIndex  # noqa: E402
from tests.engine.test_library_index import _records  # noqa: E402
from tests.engine.test_library_storage import stand_in_encoder  # noqa: E402

STAMP = {"format": "1", "library_id": "x", "generation": "g", "modality": "dna", "count": 3000, "max_id": 3000,
         "dim": 32}


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Normalised float16 vectors in clusters of about ten, as embeddings of species are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 10 + 1, dim))
    v = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)


def _queries(vectors: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = vectors[rng.integers(0, len(vectors), n)].astype(np.float32) + 0.2 * rng.normal(size=(n, vectors.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(got.tolist(), exact.tolist())]))


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ann")
    vectors = _clustered(3000, 32)
    np.save(folder / "vectors.npy", vectors)
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # as a library's index folder holds them
    seen = []
    index = build_ann(folder, STAMP, vectors, progress=lambda done, total, msg: seen.append((done, total)))
    assert seen[0] == (0, 3000) and seen[-1] == (3000, 3000)
    return folder, vectors, index


def test_recall_at_10_against_exact_search_and_exact_similarities(graph):
    _, vectors, index = graph
    q = _queries(np.asarray(vectors), 500)
    exact_s, exact_i = ExactIndex(vectors).search(q, 10)
    sims, pos = index.search(q, 10)
    assert isinstance(index, AnnIndex) and len(index) == 3000
    assert pos.shape == (500, 10) and pos.dtype == np.int64
    assert _recall(pos, exact_i) >= 0.99
    np.testing.assert_allclose(sims[:, 0], exact_s[:, 0], atol=1e-4)  # re-scored: the similarities exact search gives
    assert (np.diff(sims, axis=1) <= 0).all()  # best first


def test_a_saved_graph_viewed_again_gives_the_same_results(graph):
    folder, vectors, index = graph
    q = _queries(np.asarray(vectors), 100, seed=5)
    again = open_ann(folder, STAMP, vectors)
    for k in (1, 10, 200):
        a, b = index.search(q, k), again.search(q, k)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


def test_a_graph_of_another_state_or_a_damaged_one_is_refused_saying_why(graph, tmp_path):
    folder, vectors, _ = graph
    with pytest.raises(LibraryError, match="stale"):
        open_ann(folder, {**STAMP, "generation": "h"}, vectors)
    for name in (shard_file(0), CODER_FILE, ANN_META, "vectors.npy"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    data = (tmp_path / shard_file(0)).read_bytes()
    (tmp_path / shard_file(0)).write_bytes(data[: len(data) // 2])
    with pytest.raises(LibraryError, match=r"damaged.*bytes"):
        open_ann(tmp_path, STAMP, vectors)
    (tmp_path / shard_file(0)).write_bytes(b"\0" * len(data))  # the size written, but not a graph
    with pytest.raises(LibraryError, match="damaged"):
        open_ann(tmp_path, STAMP, vectors)
    (tmp_path / ANN_META).write_text("{not json")
    with pytest.raises(LibraryError, match="damaged"):
        open_ann(tmp_path, STAMP, vectors)
    for shards in ([1], [{"file": "../x", "start": 0, "count": 3000, "bytes": 1}], [{"file": shard_file(0)}], []):
        (tmp_path / ANN_META).write_text(json.dumps({"format": engine.ann_index.ANN_FORMAT, "stamp": STAMP,
                                                     "shards": shards}))
        with pytest.raises(LibraryError, match="damaged"):  # a list a reader cannot trust: said, not a crash
            open_ann(tmp_path, STAMP, vectors)
        build_ann(tmp_path, STAMP, vectors)  # and a build over it starts afresh
        assert open_ann(tmp_path, STAMP, vectors).search(vectors[:3].astype(np.float32), 1)[1][:, 0].tolist() == [0, 1, 2]


def test_graphs_in_shards_search_as_one_and_find_the_same_neighbours(tmp_path):
    np.save(tmp_path / "vectors.npy", _clustered(3000, 32))
    vectors = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    index = build_ann(tmp_path, STAMP, vectors, shard_references=700)  # 700, 700, 700, 700, 200
    assert [shard.ntotal for shard, _ in index.shards] == [700, 700, 700, 700, 200]
    assert [first for _, first in index.shards] == [0, 700, 1400, 2100, 2800]
    assert sorted(f.name for f in tmp_path.glob("ann-0*.faiss")) == [shard_file(i) for i in range(5)]
    q = _queries(np.asarray(vectors), 500)
    exact_s, exact_i = ExactIndex(vectors).search(q, 10)
    sims, pos = index.search(q, 10)
    assert _recall(pos, exact_i) >= 0.99 and pos.max() >= 2800  # the last shard's references are found too
    np.testing.assert_allclose(sims[:, 0], exact_s[:, 0], atol=1e-4)
    again = open_ann(tmp_path, STAMP, vectors)
    np.testing.assert_array_equal(again.search(q, 10)[1], pos)
    # fewer references than asked for in a shard: every reference, none twice
    _, every = index.search(q[:5], 3000)
    assert all(len(set(row)) == 3000 for row in every.tolist())


def _counting_builds(monkeypatch) -> list:
    import faiss

    built = []
    clone = faiss.clone_index
    monkeypatch.setattr(faiss, "clone_index", lambda index: built.append(1) or clone(index))
    return built


def test_an_extended_library_keeps_the_graphs_of_its_unchanged_shards(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    base = _clustered(3500, 32)
    np.save(first / "vectors.npy", base[:3000])
    build_ann(first, STAMP, np.load(first / "vectors.npy", mmap_mode="r"), shard_references=1000)
    built = _counting_builds(monkeypatch)

    np.save(second / "vectors.npy", base)  # 500 references added
    vectors = np.load(second / "vectors.npy", mmap_mode="r")
    stamp = {**STAMP, "count": 3500, "generation": "h"}
    index = build_ann(second, stamp, vectors, reuse=first, shard_references=1000)
    assert len(built) == 1  # only the new shard 3 was built
    for i in range(3):
        assert (second / shard_file(i)).read_bytes() == (first / shard_file(i)).read_bytes()
    q = _queries(base, 300)
    assert _recall(index.search(q, 10)[1], ExactIndex(vectors).search(q, 10)[1]) >= 0.99

    changed = base.copy()
    changed[1500] = changed[10]  # a reference of shard 1 replaced
    np.save(second / "vectors.npy", changed)
    vectors = np.load(second / "vectors.npy", mmap_mode="r")
    index = build_ann(second, {**stamp, "generation": "i"}, vectors, shard_references=1000)  # in place
    assert len(built) == 3  # shard 1 built again, and the last, partial shard; 0 and 2 kept
    assert index.search(changed[1500:1501].astype(np.float32), 2)[1][0].tolist() in ([10, 1500], [1500, 10])

    (second / shard_file(0)).write_bytes(b"\0" * (second / shard_file(0)).stat().st_size)  # damaged, same size
    build_ann(second, {**stamp, "generation": "j"}, vectors, shard_references=1000)
    assert len(built) == 5  # the damaged graph is built again, never kept (and the partial one)


# ------------------------------------------------------------------ in a library
@pytest.fixture
def large(monkeypatch):
    """Libraries of 100 references or more keep an index folder and search a graph."""
    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 100)
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 100)


def _library(path, n=1500):
    lib = ReferenceLibrary.create(path)
    lib.add(_records(n), stand_in_encoder())
    return lib


def test_a_library_searches_its_graph_only_while_it_is_fresh(tmp_path, large):
    path = tmp_path / "lib.db"
    lib = _library(path)
    refs = lib.references("dna")
    assert isinstance(refs.index, ExactIndex) and "absent" in refs.index_note  # not built yet: exact
    assert lib.build_search_index("dna") is True
    assert lib.build_search_index("dna") is False  # fresh: not built again
    lib.close()

    lib = ReferenceLibrary.open(path)
    refs = lib.references("dna")
    assert isinstance(refs.index, AnnIndex) and refs.index_note == ""
    q = np.asarray(refs.matrix[::7], dtype=np.float32)
    exact_s, exact_i = ExactIndex(refs.matrix).search(q, 10)
    assert _recall(refs.index.search(q, 10)[1], exact_i) >= 0.99
    lib.close()

    lib = ReferenceLibrary.open_writable(path)
    lib.add(_records(20, prefix="S", seed=3), stand_in_encoder())  # a new state: the graph is stale
    refs = lib.references("dna")
    assert isinstance(refs.index, ExactIndex) and "stale" in refs.index_note
    assert lib.build_search_index("dna") is True
    refs = lib.references("dna")
    assert isinstance(refs.index, AnnIndex) and len(refs.index) == 1520


def test_a_stale_graph_is_not_used_and_is_rebuilt_by_the_build_path(tmp_path, large):
    path = tmp_path / "lib.db"
    lib = _library(path)
    lib.build_search_index("dna")
    folder = tmp_path / "lib.db.index" / "dna"
    meta = json.loads((folder / ANN_META).read_text())
    (folder / ANN_META).write_text(json.dumps({**meta, "stamp": {**meta["stamp"], "generation": "older"}}))
    lib.close()
    lib = ReferenceLibrary.open(path)
    refs = lib.references("dna")
    assert isinstance(refs.index, ExactIndex) and "stale" in refs.index_note
    assert lib.build_search_index("dna") is True
    assert isinstance(lib.references("dna").index, AnnIndex)


def test_a_damaged_graph_falls_back_to_exact_search_saying_why(tmp_path, large):
    path = tmp_path / "lib.db"
    lib = _library(path)
    lib.build_search_index("dna")
    q = np.asarray(lib.references("dna").matrix[:30], dtype=np.float32)
    lib.close()
    graph_file = tmp_path / "lib.db.index" / "dna" / shard_file(0)
    graph_file.write_bytes(graph_file.read_bytes()[:5000])
    lib = ReferenceLibrary.open(path)
    refs = lib.references("dna")
    assert isinstance(refs.index, ExactIndex)
    assert "damaged" in refs.index_note and str(graph_file.parent) in refs.index_note
    exact = ExactIndex(refs.matrix).search(q, 10)
    np.testing.assert_array_equal(refs.index.search(q, 10)[1], exact[1])


def test_a_small_library_searches_exactly_without_a_graph(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 100)
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 2000)
    lib = _library(tmp_path / "lib.db")
    assert lib.build_search_index("dna") is False
    refs = lib.references("dna")
    assert isinstance(refs.index, ExactIndex) and refs.index_note == ""
    assert not (tmp_path / "lib.db.index" / "dna" / shard_file(0)).exists()


def test_a_built_library_searches_its_graph_and_calls_as_exact_search_does(tmp_path, tiny_dna_pack, synthetic_split,
                                                                          monkeypatch, large):
    from engine.build import build_library
    from engine.identify import open_identifier
    from engine.models.dna_encoder import DnaEncoder
    from tests.synthetic import write_tsv

    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 10)
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10)
    library, known, novel = synthetic_split
    write_tsv(tmp_path / "refs.tsv", library)
    out = tmp_path / "lib.db"
    lib, _ = build_library([tmp_path / "refs.tsv"], out, DnaEncoder.from_path(tiny_dna_pack))
    lib.close()
    assert (tmp_path / "lib.db.index" / "dna" / shard_file(0)).is_file()
    queries = known + novel

    approximate = open_identifier(out, tiny_dna_pack)
    assert isinstance(approximate.refs.index, AnnIndex)
    with_graph = [r.as_row() for r in approximate.identify(queries)]
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10**9)
    exact = open_identifier(out, tiny_dna_pack)
    assert isinstance(exact.refs.index, ExactIndex)
    assert with_graph == [r.as_row() for r in exact.identify(queries)]


def test_a_library_extended_with_add_builds_graphs_only_for_its_new_shard(tmp_path, tiny_dna_pack, synthetic_split,
                                                                         monkeypatch):
    from engine.build import build_library
    from engine.identify import open_identifier
    from engine.models.dna_encoder import DnaEncoder
    from tests.synthetic import write_tsv

    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 10)
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10)
    monkeypatch.setattr(engine.ann_index, "SHARD_REFERENCES", 20)
    library, known, novel = synthetic_split  # 60 references: shards of 20, 20, 20
    write_tsv(tmp_path / "refs.tsv", library)
    write_tsv(tmp_path / "more.tsv", novel)
    out = tmp_path / "lib.db"
    encoder = DnaEncoder.from_path(tiny_dna_pack)
    build_library([tmp_path / "refs.tsv"], out, encoder)[0].close()
    folder = tmp_path / "lib.db.index" / "dna"
    before = {shard_file(i): (folder / shard_file(i)).read_bytes() for i in range(3)}
    built = _counting_builds(monkeypatch)

    lib, _ = build_library([tmp_path / "more.tsv"], out, encoder, add=True)  # 24 more: shards 3 and 4
    lib.close()
    meta = json.loads((folder / ANN_META).read_text())
    assert [s["count"] for s in meta["shards"]] == [20, 20, 20, 20, 4]
    assert len(built) == 2
    assert {name: (folder / name).read_bytes() for name in before} == before
    approximate = open_identifier(out, tiny_dna_pack)
    assert isinstance(approximate.refs.index, AnnIndex) and len(approximate.refs.index.shards) == 5
    with_graph = [r.as_row() for r in approximate.identify(known + novel)]
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10**9)
    assert with_graph == [r.as_row() for r in open_identifier(out, tiny_dna_pack).identify(known + novel)]


def test_a_library_says_when_it_searches_exactly_and_bioscan_library_index_builds_its_graphs(
        tmp_path, tiny_dna_pack, synthetic_split, monkeypatch, capsys):
    from engine.cli import main
    from tests.synthetic import write_fasta, write_tsv

    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 10)
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10)
    library, known, novel = synthetic_split
    write_tsv(tmp_path / "refs.tsv", library)
    write_fasta(tmp_path / "q.fasta", known + novel)
    out = tmp_path / "lib.db"
    assert main(["library", "build", "--barcodes", str(tmp_path / "refs.tsv"), "--out", str(out), "--model",
                 str(tiny_dna_pack), "-q", "--device", "cpu"]) == 0
    lib = ReferenceLibrary.open(out)
    assert lib.uses_approximate_index("dna") and lib.search_index_problem("dna") == ""
    lib.close()
    identify = ["identify", str(tmp_path / "q.fasta"), "--library", str(out), "--model", str(tiny_dna_pack),
                "--out", str(tmp_path / "calls.csv"), "-q", "--device", "cpu"]
    capsys.readouterr()
    assert main(identify) == 0
    assert "approximate index" not in capsys.readouterr().err
    good = (tmp_path / "calls.csv").read_text()

    graph = tmp_path / "lib.db.index" / "dna" / shard_file(0)
    graph.write_bytes(graph.read_bytes()[:100])  # damaged
    assert main(identify) == 0
    err = capsys.readouterr().err
    assert "warning: lib.db: the approximate index of its 60 DNA references is damaged" in err
    assert "bioscan library index lib.db" in err
    assert (tmp_path / "calls.csv").read_text() == good  # exact search: the same calls

    assert main(["library", "info", str(out)]) == 0
    assert "damaged" in capsys.readouterr().err
    assert main(["library", "index", str(out), "-q"]) == 0
    assert "built the approximate index of lib.db (60 DNA references)" in capsys.readouterr().err
    assert main(["library", "index", str(out), "-q"]) == 0
    assert "its approximate index is up to date" in capsys.readouterr().err
    assert main(identify) == 0
    assert "warning" not in capsys.readouterr().err
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 10**9)
    assert main(["library", "index", str(out), "-q"]) == 0
    assert "searched exactly, as a library of this size is" in capsys.readouterr().err


def test_calibrating_a_large_library_does_not_open_its_graphs(tmp_path, large, monkeypatch):
    from engine.build import calibrate_library

    path = tmp_path / "lib.db"
    lib = _library(path)
    lib.build_search_index("dna")
    lib.close()
    opened = []
    real = engine.ann_index.open_ann
    monkeypatch.setattr(engine.ann_index, "open_ann", lambda *a: opened.append(1) or real(*a))
    lib = ReferenceLibrary.open_writable(path)
    calibrate_library(lib, n_samples=200)  # exact search of its own; the graphs are not read
    assert opened == []
    refs = lib.references("dna")
    assert isinstance(refs.index, AnnIndex) and refs.index_note == "" and opened == [1]
    assert isinstance(refs.index, AnnIndex) and opened == [1]  # opened once
