"""Barcodes into putative species by alignment identity on the embedding's neighbour graph.

The embedding finds each barcode's nearest neighbours (an exact search here; an approximate
index at millions); edlib aligns each barcode to those neighbours only, so the work is
O(n k) alignments instead of vsearch's all-against-centroids. Barcodes joined by an
identity at or above a threshold fall in one cluster (single linkage on that graph: the
connected components, as BOLD's BINs start from single linkage at a fixed distance).

The threshold is chosen without labels from the "barcode gap" (Meyer & Paulay 2005; ABGD,
Puillandre et al. 2012): identities between a barcode and its neighbours pile up near 100 %
within species and spread lower between species, with a trough in between. The threshold is
the middle of the least populated identity bin in GAP_WINDOW; with too few pairs in that
window to see a trough, the customary 97 % is used. The caller can fix it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.errors import BioscanError
from engine.progress import ProgressCallback

NEIGHBORS = 20
GAP_WINDOW = (0.90, 0.99)  # where species boundaries of COI lie (BOLD's BINs: ~2.2 %, OTUs: 3 %)
GAP_BIN_WIDTH = 0.01
MIN_PAIRS_IN_WINDOW = 100  # fewer than this and a trough is noise
DEFAULT_THRESHOLD = 0.97


def neighbour_identities(sequences: Sequence[str], embeddings: np.ndarray, neighbors: int = NEIGHBORS,
                         progress: ProgressCallback = None) -> np.ndarray:
    """Edges (i, j, identity) with i < j between each barcode and its nearest embedding neighbours."""
    from engine.align import pair_identities
    from engine.search import ExactIndex

    n = len(sequences)
    if n < 2:
        return np.zeros((0, 3))
    _, idx = ExactIndex(embeddings).search(embeddings, min(neighbors + 1, n))
    pairs = {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in idx[i] if int(j) != i}
    ordered = sorted(pairs)
    edges = np.zeros((len(ordered), 3))
    if ordered:
        edges[:, :2] = ordered
        edges[:, 2] = pair_identities([(sequences[i], sequences[j]) for i, j in ordered], progress=progress,
                                      message="aligning neighbours")
    return edges


def barcode_gap(identities: np.ndarray) -> float | None:
    """The middle of the least populated identity bin in GAP_WINDOW, or None with too few pairs there."""
    lo, hi = GAP_WINDOW
    inside = identities[(identities >= lo) & (identities < hi)]
    if len(inside) < MIN_PAIRS_IN_WINDOW:
        return None
    counts, edges = np.histogram(inside, bins=np.arange(lo, hi + GAP_BIN_WIDTH / 2, GAP_BIN_WIDTH))
    i = int(np.argmin(counts))  # ties: the lowest identity, the more conservative split
    return float((edges[i] + edges[i + 1]) / 2)


def cluster_by_identity(sequences: Sequence[str], embeddings: np.ndarray, threshold: float | None = None,
                        neighbors: int = NEIGHBORS, seed: int = 0, progress: ProgressCallback = None):
    """Cluster QC-cleaned barcodes (with their unit-norm embeddings) into putative species.

    Returns a ``ClusterResult`` (method "identity"): no noise, cluster ids by size; its
    silhouette is measured in the embedding space, as a label-free check comparable across
    methods; ``params`` holds the threshold, how it was chosen and the number of pairs aligned.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from engine.cluster.core import ClusterResult, _check_embeddings, _relabel_by_size, cluster_summary, silhouette

    emb = _check_embeddings(embeddings)
    n = len(sequences)
    if n == 0:
        raise BioscanError("nothing to cluster: no barcodes")
    if len(emb) != n:
        raise BioscanError(f"{n} barcodes but {len(emb)} embeddings")
    if threshold is not None and not 0.5 <= threshold <= 1.0:
        raise BioscanError(f"identity threshold {threshold} is not between 0.5 and 1")
    edges = neighbour_identities(sequences, emb, neighbors, progress)
    if threshold is not None:
        chosen_by = "caller"
    else:
        threshold = barcode_gap(edges[:, 2])
        chosen_by = "barcode gap"
        if threshold is None:
            threshold, chosen_by = DEFAULT_THRESHOLD, "default (too few pairs to see a barcode gap)"
    keep = edges[:, 2] >= threshold
    graph = coo_matrix((np.ones(int(keep.sum())), (edges[keep, 0].astype(int), edges[keep, 1].astype(int))),
                       shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    labels = _relabel_by_size(labels)
    dist, sizes, reps = cluster_summary(emb, labels)
    params = {"threshold": round(float(threshold), 4), "chosen_by": chosen_by, "neighbors": neighbors,
              "pairs_aligned": int(len(edges)), "seed": seed}
    return ClusterResult(labels=labels, method="identity", params=params, silhouette=silhouette(emb, labels, seed),
                         distance_to_centroid=dist, sizes=sizes, representatives=reps, reduced=emb,
                         approximations=["alignments only between embedding neighbours "
                                         f"({neighbors} per barcode), not all pairs"])
