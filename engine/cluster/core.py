"""Cluster specimen embeddings into putative species without labels.

Following the zero-shot clustering protocol used on BIOSCAN-5M: embeddings are reduced
with UMAP (cosine metric), then clustered with agglomerative Ward linkage or HDBSCAN in
the reduced space. The number of clusters (agglomerative) or the minimum cluster size
(HDBSCAN) is chosen without labels, as the value with the highest silhouette score in the
reduced space; a caller may fix it instead. scikit-learn and umappp (the C++ UMAP behind
scranpy's ``run_umap``) do the work; this module only chooses their parameters and summarises
what they return. Both are imported on first use. umappp rather than umap-learn: it needs no
numba (umap-learn's first import compiled for ~15 s and numba's LLVM was 171 MB of the desktop
bundle), runs 3-6x faster here, and clusters held-out species as well (docs/clustering.md).
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from engine.errors import BioscanError
from engine.progress import ProgressCallback, report

METHODS = ("agglomerative", "hdbscan")
UMAP_DIMS = 10
UMAP_NEIGHBORS = 15
# Below this many items a 15-neighbour UMAP graph blurs small groups into their neighbours (30 synthetic
# barcodes in 6 species: AMI 0.81 with UMAP, 1.0 without): cluster the embeddings as they are.
MIN_ITEMS_FOR_UMAP = 100
# Silhouette is O(n^2); above this it is measured on a seeded random sample of this size.
SILHOUETTE_SAMPLE = 10_000
# Unstructured Ward needs n(n-1)/2 float64 distances (0.4 GB at 10,000); above this the merge
# is restricted to a k-nearest-neighbour graph in the reduced space (memory O(n k)).
WARD_CONNECTIVITY_ABOVE = 10_000
WARD_CONNECTIVITY_NEIGHBORS = 15
HDBSCAN_MIN_CLUSTER_SIZES = (2, 3, 4, 6, 8, 12, 16, 24)
NOISE = -1


@dataclass
class ClusterResult:
    """Clusters of n items. Cluster ids run 0..n_clusters-1, largest cluster first; -1 is noise."""

    labels: np.ndarray  # (n,) int
    method: str
    params: dict[str, object]  # the values used, and "chosen_by": "silhouette" or "caller"
    silhouette: float  # in the reduced space; nan when undefined (fewer than 2 clusters)
    distance_to_centroid: np.ndarray  # (n,) cosine distance to the cluster's mean direction; nan for noise
    sizes: np.ndarray  # (n_clusters,) members per cluster
    representatives: np.ndarray  # (n_clusters,) index of the member closest to the centroid
    reduced: np.ndarray  # (n, dims) the space clustered in
    scores: list[tuple[int, float]] = field(default_factory=list)  # (candidate value, silhouette) tried
    approximations: list[str] = field(default_factory=list)  # what was approximated at this size

    @property
    def n_clusters(self) -> int:
        return len(self.sizes)

    @property
    def n_noise(self) -> int:
        return int(np.sum(self.labels == NOISE))

    def summary(self) -> str:
        """One line for logs and stderr."""
        chosen = {k: v for k, v in self.params.items() if k != "chosen_by"}
        text = (f"{self.method}: {self.n_clusters} clusters"
                + (f", {self.n_noise} noise" if self.n_noise else "")
                + f", silhouette {self.silhouette:.3f} ({'embedding' if self.method == 'identity' else 'reduced'}"
                + " space); parameters "
                + ", ".join(f"{k}={v}" for k, v in chosen.items())
                + f" (chosen by {self.params.get('chosen_by', 'caller')})")
        if self.approximations:
            text += "; approximated: " + "; ".join(self.approximations)
        return text


def _check_embeddings(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2:
        raise BioscanError(f"embeddings must be an (n, d) matrix, got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise BioscanError("embeddings contain NaN or infinite values")
    return emb


def _umap(emb: np.ndarray, dims: int, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    from scranpy import run_umap

    # Cosine UMAP: on unit vectors Euclidean neighbours are the cosine neighbours. umappp finds them
    # with Annoy (approximate, scales to large projects) and, with serial optimisation, gives the
    # same coordinates for the same seed whatever the thread count.
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    coords = run_umap(np.ascontiguousarray(unit.T, dtype=np.float64), num_dim=dims,
                      num_neighbors=min(n_neighbors, len(emb) - 1), min_dist=min_dist,
                      initialize_seed=seed, optimize_seed=seed, num_threads=os.cpu_count() or 1)
    return np.asarray(coords, dtype=np.float32)


def reduce_embeddings(emb: np.ndarray, dims: int = UMAP_DIMS, n_neighbors: int = UMAP_NEIGHBORS,
                      seed: int = 0, min_dist: float = 0.0) -> np.ndarray:
    """UMAP (cosine) to ``dims`` dimensions; tiny sets (or dims >= d) are returned unreduced."""
    emb = _check_embeddings(emb)
    if len(emb) < MIN_ITEMS_FOR_UMAP or dims >= emb.shape[1]:
        return emb
    return _umap(emb, dims, n_neighbors, min_dist, seed)


def reduce_2d(emb: np.ndarray, seed: int = 0, progress: ProgressCallback = None) -> np.ndarray:
    """(n, 2) coordinates for a cluster map (UMAP, cosine); tiny sets use PCA."""
    emb = _check_embeddings(emb)
    report(progress, 0, 1, "computing the 2-D map (UMAP)")
    n = len(emb)
    if n < MIN_ITEMS_FOR_UMAP:
        from sklearn.decomposition import PCA

        out = np.zeros((n, 2), dtype=np.float32)
        if n >= 2:
            comps = min(2, n, emb.shape[1])
            out[:, :comps] = PCA(n_components=comps, random_state=seed).fit_transform(emb)
    else:
        out = _umap(emb, 2, UMAP_NEIGHBORS, 0.1, seed)
    report(progress, 1, 1, "computing the 2-D map (UMAP)")
    return out


def silhouette(space: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Mean silhouette in ``space`` with noise points scoring 0 (so labelling points noise is not free).

    Undefined (nan) with fewer than 2 clusters or when every item is its own cluster.
    Above SILHOUETTE_SAMPLE items it is the mean over a seeded random sample.
    """
    from sklearn.metrics import silhouette_samples

    labels = np.asarray(labels)
    n = len(labels)
    idx = np.arange(n)
    if n > SILHOUETTE_SAMPLE:
        idx = np.sort(np.random.default_rng(seed).choice(n, SILHOUETTE_SAMPLE, replace=False))
    lab = labels[idx]
    clustered = idx[lab != NOISE]
    n_labels = len(np.unique(labels[clustered]))
    if n_labels < 2 or n_labels >= len(clustered):
        return float("nan")
    s = silhouette_samples(space[clustered], labels[clustered])
    return float(s.sum() / len(idx))


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster ids by decreasing size (ties: earliest first member), noise kept at -1."""
    labels = np.asarray(labels)
    out = np.full(len(labels), NOISE, dtype=np.int64)
    kept = labels != NOISE
    if not kept.any():
        return out
    uniq, first, counts = np.unique(labels[kept], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    new_id = np.empty(len(uniq), dtype=np.int64)
    new_id[order] = np.arange(len(uniq))
    out[kept] = new_id[np.searchsorted(uniq, labels[kept])]
    return out


def cluster_summary(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distance_to_centroid, sizes, representatives) for labels 0..k-1 (-1 = noise).

    The centroid is the normalised mean of the members' (unit) embeddings, so the distance
    is a cosine distance in the original embedding space, not in the UMAP space.
    """
    n, d = emb.shape
    k = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    dist = np.full(n, np.nan, dtype=np.float32)
    sizes = np.bincount(labels[labels >= 0], minlength=k).astype(np.int64)
    if k == 0:
        return dist, sizes, np.zeros(0, dtype=np.int64)
    kept = np.flatnonzero(labels >= 0)
    sums = np.zeros((k, d), dtype=np.float64)
    np.add.at(sums, labels[kept], emb[kept])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    centroids = (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    dist[kept] = np.clip(1.0 - np.einsum("ij,ij->i", emb[kept], centroids[labels[kept]]), 0.0, 2.0)
    return dist, sizes, representatives(labels, dist)


def representatives(labels: np.ndarray, distance_to_centroid: np.ndarray) -> np.ndarray:
    """(n_clusters,) index of each cluster's member closest to its centroid (ties: the first)."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    reps = np.zeros(k, dtype=np.int64)
    kept = np.flatnonzero(labels >= 0)
    if k == 0:
        return reps
    dist = np.nan_to_num(np.asarray(distance_to_centroid, dtype=np.float64)[kept], nan=np.inf)
    order = kept[np.lexsort((kept, dist, labels[kept]))]  # by cluster, then distance, then index
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    reps[labels[order][first]] = order[first]
    return reps


# ---------------------------------------------------------------------------- agglomerative
class _WardCuts:
    """Cuts of one Ward tree at any number of clusters.

    scikit-learn caches the tree with joblib (its ``memory`` option), so each cut after the
    first only replays merges instead of rebuilding the tree.
    """

    def __init__(self, space: np.ndarray):
        self.space = space
        self.connectivity = None
        if len(space) > WARD_CONNECTIVITY_ABOVE:
            from sklearn.neighbors import kneighbors_graph

            self.connectivity = kneighbors_graph(space, WARD_CONNECTIVITY_NEIGHBORS, include_self=False)
        self._tmp = tempfile.TemporaryDirectory(prefix="bioscan-ward-")

    def labels(self, k: int) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=self.connectivity,
                                       compute_full_tree=True, memory=self._tmp.name)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)  # disconnected kNN graph is completed
            return model.fit_predict(self.space)

    def close(self) -> None:
        self._tmp.cleanup()


def _search_k(score, k_min: int, k_max: int, progress: ProgressCallback) -> int:
    """The k in [k_min, k_max] with the best score: a geometric grid, then finer grids around the best."""
    tried: dict[int, float] = {}

    def evaluate(ks: Sequence[int], stage: str) -> None:
        todo = [k for k in ks if k not in tried]
        for i, k in enumerate(todo):
            report(progress, i, len(todo), stage)
            tried[k] = score(k)
        report(progress, len(todo), len(todo), stage)

    def best() -> int:
        finite = {k: s for k, s in tried.items() if not math.isnan(s)}
        return max(finite, key=lambda k: (finite[k], -k)) if finite else k_min

    evaluate(sorted({int(round(k)) for k in np.geomspace(k_min, k_max, 24)}), "choosing the number of clusters")
    for _ in range(4):
        ks = sorted(tried)
        i = ks.index(best())
        lo, hi = ks[max(i - 1, 0)], ks[min(i + 1, len(ks) - 1)]
        if hi - lo <= 2:
            break
        evaluate(sorted({int(round(k)) for k in np.linspace(lo, hi, 12)}), "refining the number of clusters")
    return best()


def _agglomerative(space: np.ndarray, n_clusters: int | None, seed: int, k_range: tuple[int, int] | None,
                   progress: ProgressCallback) -> tuple[np.ndarray, dict, list[tuple[int, float]], list[str]]:
    n = len(space)
    cuts = _WardCuts(space)
    approx = []
    if cuts.connectivity is not None:
        approx.append(f"Ward merges restricted to a {WARD_CONNECTIVITY_NEIGHBORS}-nearest-neighbour graph")
    try:
        if n_clusters is not None:
            if not 1 <= n_clusters <= n:
                raise BioscanError(f"--n-clusters must be between 1 and the number of specimens ({n})")
            labels = cuts.labels(n_clusters)
            return labels, {"n_clusters": n_clusters, "chosen_by": "caller"}, [], approx
        k_min, k_max = k_range or (2, max(2, n // 2))
        k_max = min(k_max, n - 1)
        if k_max < 2:  # 1 or 2 items: nothing to choose
            return np.zeros(n, dtype=np.int64), {"n_clusters": 1, "chosen_by": "too few items"}, [], approx
        scores: dict[int, float] = {}

        def score(k: int) -> float:
            scores[k] = silhouette(space, cuts.labels(k), seed)
            return scores[k]

        k = _search_k(score, max(2, k_min), k_max, progress)
        return cuts.labels(k), {"n_clusters": k, "chosen_by": "silhouette"}, sorted(scores.items()), approx
    finally:
        cuts.close()


# ---------------------------------------------------------------------------- HDBSCAN
def _hdbscan(space: np.ndarray, min_cluster_size: int | None, seed: int, progress: ProgressCallback
             ) -> tuple[np.ndarray, dict, list[tuple[int, float]], list[str]]:
    from sklearn.cluster import HDBSCAN

    n = len(space)

    def run(m: int) -> np.ndarray:
        # min_samples=1 keeps small species (2-5 specimens) from being declared noise wholesale
        return HDBSCAN(min_cluster_size=m, min_samples=1, cluster_selection_method="eom",
                       copy=True).fit_predict(space)

    if min_cluster_size is not None:
        if min_cluster_size < 2:
            raise BioscanError("the HDBSCAN minimum cluster size must be at least 2")
        return run(min_cluster_size), {"min_cluster_size": min_cluster_size, "chosen_by": "caller"}, [], []
    if n < 3:
        return np.full(n, NOISE, dtype=np.int64), {"min_cluster_size": 2, "chosen_by": "too few items"}, [], []
    candidates = [m for m in HDBSCAN_MIN_CLUSTER_SIZES if m <= max(2, n // 2)]
    scores, runs = [], {}
    for i, m in enumerate(candidates):
        report(progress, i, len(candidates), "choosing the minimum cluster size")
        runs[m] = run(m)
        scores.append((m, silhouette(space, runs[m], seed)))
    report(progress, len(candidates), len(candidates), "choosing the minimum cluster size")
    finite = [(s, -m) for m, s in scores if not math.isnan(s)]
    best = -max(finite)[1] if finite else candidates[0]
    return runs[best], {"min_cluster_size": best, "chosen_by": "silhouette"}, scores, []


# ---------------------------------------------------------------------------- entry point
def cluster_embeddings(
    emb: np.ndarray,
    method: str = "agglomerative",
    n_clusters: int | None = None,
    min_cluster_size: int | None = None,
    umap_dims: int = UMAP_DIMS,
    umap_neighbors: int = UMAP_NEIGHBORS,
    seed: int = 0,
    k_range: tuple[int, int] | None = None,
    progress: ProgressCallback = None,
) -> ClusterResult:
    """Cluster unit-norm embeddings (n, d) into putative species.

    ``n_clusters`` (agglomerative) or ``min_cluster_size`` (HDBSCAN) fixes the parameter;
    left as None it is chosen by the silhouette score in the UMAP space. ``umap_dims=0``
    clusters the embeddings themselves. The same inputs and seed give the same result.
    """
    if method not in METHODS:
        raise BioscanError(f"unknown clustering method {method!r} (choose {' or '.join(METHODS)})")
    if method == "hdbscan" and n_clusters is not None:
        raise BioscanError("HDBSCAN finds the number of clusters itself; --n-clusters is for agglomerative")
    emb = _check_embeddings(emb)
    n = len(emb)
    if n == 0:
        raise BioscanError("nothing to cluster: no embeddings")
    approx = []
    report(progress, 0, 1, "reducing dimensions (UMAP)")
    space = reduce_embeddings(emb, umap_dims, umap_neighbors, seed) if umap_dims else emb
    reduced = space is not emb
    report(progress, 1, 1, "reducing dimensions (UMAP)")
    if n > SILHOUETTE_SAMPLE:
        approx.append(f"silhouette on a random sample of {SILHOUETTE_SAMPLE:,} items")
    if method == "agglomerative":
        labels, params, scores, more = _agglomerative(space, n_clusters, seed, k_range, progress)
    else:
        labels, params, scores, more = _hdbscan(space, min_cluster_size, seed, progress)
    labels = _relabel_by_size(labels)
    params.update(umap_dims=space.shape[1] if reduced else 0, umap_neighbors=umap_neighbors if reduced else 0,
                  seed=seed)
    dist, sizes, reps = cluster_summary(emb, labels)
    return ClusterResult(labels=labels, method=method, params=params, silhouette=silhouette(space, labels, seed),
                         distance_to_centroid=dist, sizes=sizes, representatives=reps, reduced=space,
                         scores=scores, approximations=approx + more)


def ami(labels_true: Sequence, labels_pred: Sequence) -> float:
    """Adjusted mutual information; each noise item (-1) in ``labels_pred`` counts as its own cluster."""
    from sklearn.metrics import adjusted_mutual_info_score

    pred = np.asarray(labels_pred).copy()
    noise = pred == NOISE
    if noise.any():
        pred[noise] = pred.max() + 1 + np.arange(int(noise.sum()))
    return float(adjusted_mutual_info_score(list(labels_true), pred))
