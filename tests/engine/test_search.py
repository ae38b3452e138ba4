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
