"""Shared-k-mer search (engine.kmer_index) and the identity candidates it adds in alignment mode."""
from __future__ import annotations

import numpy as np
import pytest

import engine.kmer_index as kmer_index
from engine.align import identity
from engine.identify import DnaIdentifier
from engine.kmer_index import K, KmerIndex, top_shared, widen
from engine.library import ReferenceLibrary
from engine.models.dna_encoder import DnaEncoder


def _distinct_kmers(seq: str) -> set[str]:
    return {seq[i: i + K] for i in range(len(seq) - K + 1) if set(seq[i: i + K]) <= set("ACGT")}


def _random_sequences(rng, n, length=120):
    seqs = ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]
    seqs[1] = seqs[1][:40] + "NNN" + seqs[1][43:]  # k-mers over an N are skipped
    seqs[2] = "acgtac"  # shorter than K, lower case
    return seqs


def test_shared_counts_are_the_distinct_kmers_two_sequences_have_in_common():
    rng = np.random.default_rng(0)
    refs = _random_sequences(rng, 40) + [None, ""]
    base = refs[0]
    queries = [base[:60] + "".join(rng.choice(list("ACGT"), size=60)) for _ in range(300)] + refs[:3]
    shared = KmerIndex(refs).shared(queries, threads=2).toarray()  # 303 queries: two chunks
    expected = np.array([[len(_distinct_kmers(q.upper()) & _distinct_kmers((r or "").upper())) for r in refs]
                         for q in queries])
    assert shared.shape == (len(queries), len(refs))
    assert (shared == expected).all() and expected[:300, 0].min() >= 60 - K + 1


def test_kmers_most_references_hold_are_not_counted(monkeypatch):
    rng = np.random.default_rng(1)
    common = "ACGTTGCAAC"  # its three 8-mers are in every reference
    refs = [common + s for s in _random_sequences(rng, 30)[3:]]
    monkeypatch.setattr(kmer_index, "COMMON_MIN_REFERENCES", 5)
    index = KmerIndex(refs)
    kmers = [_distinct_kmers(r) for r in refs]
    held_by = {}
    for ks in kmers:
        for km in ks:
            held_by[km] = held_by.get(km, 0) + 1
    cut = {km for km, n in held_by.items() if n > max(kmer_index.COMMON_SHARE * len(refs), 5)}
    assert _distinct_kmers(common) <= cut and index.common_kmers == len(cut)
    assert (index.shared([common]).toarray() == 0).all()
    shared = index.shared(refs[:4]).toarray()
    assert (shared == [[len(kmers[q] & kmers[r] - cut) for r in range(len(refs))] for q in range(4)]).all()


def test_top_shared_ranks_by_count_and_leaves_out_the_excluded():
    from scipy import sparse

    shared = sparse.csr_matrix(np.array([[3, 9, 0, 5, 7]], dtype=np.int16))
    assert top_shared(shared, 0, 3).tolist() == [1, 4, 3]
    excluded = np.array([False, True, False, False, False])
    assert top_shared(shared, 0, 10, excluded).tolist() == [4, 3, 0]


def test_widen_keeps_the_best_of_both_lists_once():
    cands, scores = widen(np.array([5, 2]), np.array([0.90, 0.80]), np.array([2, 7, 9]), np.array([0.80, 0.95, 0.10]), 3)
    assert cands.tolist() == [7, 5, 2] and scores.tolist() == [0.95, 0.90, 0.80]


def test_queries_without_a_close_embedding_candidate_get_the_best_identity_reference(
        tiny_library, tiny_dna_pack, synthetic_split, monkeypatch):
    library_records, _, novel = synthetic_split
    lib = ReferenceLibrary.open(tiny_library)
    refs = lib.references("dna")
    best = [max(identity(q.sequence, s) for s in refs.sequences) for q in novel]
    assert max(best) < kmer_index.WIDEN_BELOW  # every novel query is searched again

    def top_identities(widen_below: float) -> list[float]:
        monkeypatch.setattr(kmer_index, "WIDEN_BELOW", widen_below)
        ident = DnaIdentifier(lib, DnaEncoder.from_path(tiny_dna_pack), k=5)  # a short shortlist misses some
        return [r.matches[0].identity for r in ident.identify(novel)]

    assert top_identities(kmer_index.WIDEN_BELOW) == pytest.approx(best)
    assert top_identities(0.0) != pytest.approx(best)  # the embedding's 5 candidates alone miss some


def test_a_library_too_large_for_a_kmer_index_widens_with_a_longer_embedding_shortlist(
        tiny_library, tiny_dna_pack, synthetic_split, monkeypatch):
    library_records, _, novel = synthetic_split
    lib = ReferenceLibrary.open(tiny_library)
    refs = lib.references("dna")
    best = [max(identity(q.sequence, s) for s in refs.sequences) for q in novel]
    monkeypatch.setattr(kmer_index, "MAX_REFERENCES", 0)  # as a library of millions: no k-mer index
    searched: list[int] = []
    search = refs.index.search

    def spy(queries, k):
        searched.append(k)
        return search(queries, k)

    monkeypatch.setattr(refs.index, "search", spy)

    def top_identities(shortlist: int) -> list[float]:
        monkeypatch.setattr(kmer_index, "WIDE_SHORTLIST", shortlist)
        ident = DnaIdentifier(lib, DnaEncoder.from_path(tiny_dna_pack), k=5)
        assert ident.refs.kmer_index() is None
        return [r.matches[0].identity for r in ident.identify(novel)]

    assert top_identities(len(refs)) == pytest.approx(best)  # the whole library as the shortlist
    assert searched[-1] == len(refs)
    assert top_identities(5) != pytest.approx(best)  # no wider than the first search: some missed


def test_a_saved_index_opens_with_the_same_counts_and_only_for_its_own_state(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    refs = _random_sequences(rng, 60)
    queries = refs[3:10] + [refs[0][:50] + refs[4][50:]]
    built = KmerIndex(refs)
    folder, state = tmp_path / "kmers", {"library_id": "a", "generation": "1"}
    built.save(folder, state)
    opened = KmerIndex.load(folder, state)
    assert opened is not None and not opened._by_kmer.indices.flags.writeable  # the saved file, memory-mapped
    assert (opened.shared(queries).toarray() == built.shared(queries).toarray()).all()
    assert opened.common_kmers == built.common_kmers and opened.n_references == len(refs)
    assert KmerIndex.load(folder, {"library_id": "a", "generation": "2"}) is None  # another state of the library
    monkeypatch.setattr(kmer_index, "COMMON_SHARE", 0.5)  # other k-mer settings: built again
    assert KmerIndex.load(folder, state) is None


def test_a_damaged_or_unwritable_saved_index_is_built_again(tmp_path):
    rng = np.random.default_rng(3)
    refs = _random_sequences(rng, 30)
    folder, state = tmp_path / "kmers", {"generation": "1"}
    KmerIndex(refs).save(folder, state)
    (folder / "indices.npy").write_bytes((folder / "indices.npy").read_bytes()[:100])  # truncated
    assert KmerIndex.load(folder, state) is None
    index = KmerIndex.cached(refs, folder, state)  # rebuilt and saved again
    assert (index.shared(refs[:5]).toarray() == KmerIndex(refs).shared(refs[:5]).toarray()).all()
    assert KmerIndex.load(folder, state) is not None
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    index = KmerIndex.cached(refs, blocked / "kmers", state)  # cannot be saved: still an index
    assert index.n_references == len(refs)


def test_identify_opens_the_library_kmer_index_its_first_use_built(tiny_library, tiny_dna_pack, synthetic_split,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    novel = synthetic_split[2]
    first = DnaIdentifier(ReferenceLibrary.open(tiny_library), DnaEncoder.from_path(tiny_dna_pack))
    calls = [(r.matches[0].identity, r.call) for r in first.identify(novel)]
    saved = list((tmp_path / "cache").rglob("stamp.json"))
    assert len(saved) == 1 and "kmer-index" in saved[0].parts

    def no_build(self, sequences):
        raise AssertionError("the k-mer index was built again")

    monkeypatch.setattr(KmerIndex, "__init__", no_build)
    again = DnaIdentifier(ReferenceLibrary.open(tiny_library), DnaEncoder.from_path(tiny_dna_pack))
    assert [(r.matches[0].identity, r.call) for r in again.identify(novel)] == calls
