"""Exact nearest-neighbour search (ONNX Runtime graph) against a brute-force reference."""
import numpy as np
import pytest

from engine.search import TOPK_GRAPH, ExactIndex


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_finds_the_true_top_k_best_first():
    rng = np.random.default_rng(0)
    refs, queries = unit(rng.normal(size=(3000, 32))), unit(rng.normal(size=(700, 32)))
    sims, idx = ExactIndex(refs, chunk_rows=256).search(queries, 10)
    full = queries @ refs.T
    want = np.argsort(-full, axis=1)[:, :10]
    assert idx.shape == (700, 10) and idx.dtype == np.int64
    assert (idx == want).mean() > 0.999  # ties aside
    assert np.allclose(sims, np.take_along_axis(full, idx, axis=1), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()


def test_k_larger_than_the_index_and_empty_queries():
    refs = unit(np.random.default_rng(1).normal(size=(5, 8)))
    sims, idx = ExactIndex(refs).search(refs, 50)
    assert idx.shape == (5, 5) and (idx[:, 0] == np.arange(5)).all()
    assert ExactIndex(refs).search(refs[:0], 3)[1].shape == (0, 3)


def test_committed_graph_is_the_one_the_generator_makes():
    pytest.importorskip("onnx", reason="needs the [train] extra")
    from engine.train.export import exact_topk_graph

    assert TOPK_GRAPH.read_bytes() == exact_topk_graph()


def test_large_libraries_are_searched_in_chunks_within_the_score_budget(monkeypatch):
    import engine.search as search

    rng = np.random.default_rng(2)
    refs, queries = unit(rng.normal(size=(2000, 16))), unit(rng.normal(size=(50, 16)))
    monkeypatch.setattr(search, "SCORE_MATRIX_BYTES", 4 * 2000 * 7)  # room for 7 queries' scores
    index = ExactIndex(refs)
    assert index.chunk_rows == 7
    sims, idx = index.search(queries, 5)
    full = queries @ refs.T
    assert (idx == np.argsort(-full, axis=1)[:, :5]).mean() > 0.999
    assert np.allclose(sims, np.take_along_axis(full, idx, axis=1), atol=1e-5)


def test_rows_of_a_memory_mapped_matrix_are_read_from_its_file_without_mapping_them(tmp_path):
    from engine.search import read_rows

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(5000, 64)).astype(np.float16)
    np.save(tmp_path / "v.npy", matrix)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    for start, stop in [(0, 10), (4990, 6000), (123, 4567), (7, 7)]:
        got = read_rows(mapped, start, stop)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, matrix[start: stop].astype(np.float32))
    # of the 640 kB mapped, at most the header's page and the kernel's fault-around (16 pages) are resident
    assert _mapped_kb(tmp_path / "v.npy") <= 64
    np.testing.assert_array_equal(read_rows(mapped[100:], 0, 5), matrix[100:105].astype(np.float32))  # a view
    np.testing.assert_array_equal(read_rows(matrix, 2, 4), matrix[2:4].astype(np.float32))  # in memory
    np.asarray(mapped[:4000], dtype=np.float32)  # as a slice of the mapping would be read
    assert _mapped_kb(tmp_path / "v.npy") > 400


def _mapped_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    lines = open("/proc/self/smaps").read().split("\n")
    total, inside = 0, False
    for line in lines:
        if line and not line[0].isupper() or "-" in line.split(" ")[0]:  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_gather_rows_reads_scattered_rows_of_a_mapped_file_as_indexing_would(tmp_path):
    from engine.search import gather_rows

    rng = np.random.default_rng(4)
    data = rng.normal(size=(5000, 16)).astype(np.float16)
    np.save(tmp_path / "v.npy", data)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    positions = rng.integers(0, 5000, 300)  # unsorted, with repeats
    got = gather_rows(mapped, positions)
    assert got.dtype == np.float32 and got.shape == (300, 16)
    np.testing.assert_array_equal(got, data[positions].astype(np.float32))
    np.testing.assert_array_equal(gather_rows(data, positions), data[positions].astype(np.float32))  # in memory
    assert gather_rows(mapped, np.array([], dtype=np.int64)).shape == (0, 16)
    with pytest.raises(IndexError):
        gather_rows(mapped, np.array([5000]))
