"""Clustering barcodes by alignment identity on the embedding's neighbour graph."""
import itertools

import numpy as np
import pytest

from engine.cluster import ami
from engine.cluster.identity import DEFAULT_THRESHOLD, barcode_gap, cluster_by_identity
from engine.errors import BioscanError
from tests.synthetic import make_barcodes

_KMERS = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=4))}


def kmer_profiles(seqs):
    """Unit 4-mer count vectors: a model-free stand-in for the DNA encoder's neighbours."""
    x = np.zeros((len(seqs), len(_KMERS)), dtype=np.float32)
    for i, s in enumerate(seqs):
        for j in range(len(s) - 3):
            x[i, _KMERS[s[j:j + 4]]] += 1
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def barcodes():
    recs = make_barcodes(genera=8, species_per_genus=4, records_per_species=8, seed=5)
    seqs = [r.sequence for r in recs]
    return seqs, kmer_profiles(seqs), [r.taxonomy.species for r in recs], [r.taxonomy.genus for r in recs]


def test_species_are_recovered_with_a_threshold_chosen_from_the_barcode_gap(barcodes):
    seqs, emb, species, _ = barcodes
    result = cluster_by_identity(seqs, emb)
    assert result.params["chosen_by"] == "barcode gap"
    # records of a species are ~98.5 % identical, species of a genus ~90 %: the trough lies between
    assert 0.92 < result.params["threshold"] < 0.98
    assert result.n_clusters == len(set(species)) == 32
    assert ami(species, result.labels) == pytest.approx(1.0)
    assert result.sizes.sum() == len(seqs) and (result.labels >= 0).all()
    assert result.silhouette > 0.3


def test_a_fixed_threshold_is_obeyed(barcodes):
    seqs, emb, species, genera = barcodes
    loose = cluster_by_identity(seqs, emb, threshold=0.85)
    assert loose.params["chosen_by"] == "caller"
    assert ami(genera, loose.labels) > ami(species, loose.labels)  # species of a genus merge
    strict = cluster_by_identity(seqs, emb, threshold=0.999)
    assert strict.n_clusters > len(set(species))  # records split apart


def test_few_barcodes_fall_back_to_the_customary_threshold(barcodes):
    seqs, emb, species, _ = barcodes
    result = cluster_by_identity(seqs[:16], emb[:16])
    assert result.params["threshold"] == DEFAULT_THRESHOLD
    assert result.params["chosen_by"].startswith("default")
    assert ami(species[:16], result.labels) == pytest.approx(1.0)


def test_barcode_gap_is_the_least_populated_bin():
    rng = np.random.default_rng(0)
    ident = np.concatenate([rng.uniform(0.985, 1.0, 500), rng.uniform(0.90, 0.93, 300), rng.uniform(0.95, 0.98, 60)])
    assert 0.93 <= barcode_gap(ident) <= 0.95
    assert barcode_gap(rng.uniform(0.99, 1.0, 1000)) is None


def test_bad_arguments_are_refused(barcodes):
    seqs, emb, _, _ = barcodes
    with pytest.raises(BioscanError, match="embeddings"):
        cluster_by_identity(seqs[:5], emb[:4])
    with pytest.raises(BioscanError, match="between 0.5 and 1"):
        cluster_by_identity(seqs, emb, threshold=97)
