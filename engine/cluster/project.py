"""Clustering a project database's specimens, with the 2-D map and the clusters cached in it.

Two ways, both cached in the project file:

- ``map_project_species``: the cluster map's putative species. Every specimen with a usable
  barcode is clustered by alignment identity on the embedding's neighbour graph (the method of
  `bioscan cluster FILE`, engine.cluster.identity, on its longest QC-cleaned barcode); specimens
  with photos and no usable barcode are clustered by their photo embeddings (agglomerative,
  k by silhouette). Each specimen lands in exactly one cluster; one UMAP of the embeddings
  places them on the map. The result is cached under a key of the inputs (specimen and item
  ids, sequences, photo files' sha256, model sha256, parameters), so reopening an unchanged
  project reads it back and any import that changes the specimens recomputes it.
- ``cluster_project``: UMAP + Ward/HDBSCAN of one embedding modality ("dna", "image",
  "fused": a specimen's DNA and photo embeddings, each normalised, concatenated), of the
  novel specimens or all; one point per specimen (the normalised mean of its embeddings).

The cache tables are part of the project schema (``engine.project.schema.create_cluster_cache_tables``,
created when first needed); what is clustered is read through the project's read API
(``best_barcodes``, ``embedded_photos``, ``embedding_rows``).
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.cluster.consensus import Consensus, consensus_taxonomy
from engine.cluster.core import (
    ClusterResult, _relabel_by_size, cluster_embeddings, cluster_summary, reduce_2d, representatives,
)
from engine.cluster.table import cluster_rows
from engine.errors import BioscanError
from engine.progress import ProgressCallback, report
from engine.project.schema import create_cluster_cache_tables
from engine.records import RANKS, Call, RankCall

PROJECT_MODALITIES = {"dna": ("dna",), "image": ("photo",), "fused": ("dna", "photo")}
SELECTIONS = ("novel", "all")
# Bump when map_project_species would give other clusters for the same inputs: old caches are then stale.
SPECIES_MAP_VERSION = 1
# A putative species has "no close library match" when more than this fraction of its members were
# called novel by the identifier (its members without a call count against).
NO_MATCH_MAJORITY = 0.5


_CONFIDENCE_COLUMNS = [(r, f"{r}_confidence") for r in RANKS]


def call_from_row(row: dict[str, Any]) -> Call | None:
    """The machine call of a project specimens row (None for errors and pending photos)."""
    if row.get("status") not in ("ok", "novel"):
        return None
    ranks = {r: RankCall(r, row.get(r) or "", float(row.get(key) or 0.0)) for r, key in _CONFIDENCE_COLUMNS}
    return Call(ranks, novel=bool(row.get("novel")), novel_rank=row.get("novel_rank") or "")


@contextmanager
def _snapshot(project) -> Iterator[None]:
    """One read transaction: the queries inside see the same state of the file, whatever an import commits."""
    project.conn.execute("BEGIN")
    try:
        yield
    finally:
        project.conn.execute("COMMIT")


def _per_specimen(project, modality: str) -> tuple[dict[int, np.ndarray], set[str]]:
    """specimen id -> normalised mean embedding of one stored modality, and the models' sha256."""
    rows = project.conn.execute("SELECT specimen_id, model_sha256 FROM embeddings WHERE modality = ? "
                                "ORDER BY item_id", [modality]).fetchall()
    ids, mat = project.embeddings(modality)
    return _mean_by_specimen(ids, mat), {r[1] or "" for r in rows}


def _mean_by_specimen(specimen_ids, mat: np.ndarray) -> dict[int, np.ndarray]:
    sums: dict[int, np.ndarray] = {}
    for sid, vec in zip(specimen_ids, mat):
        sums[sid] = sums[sid] + vec if sid in sums else vec.astype(np.float64)
    return {sid: (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32) for sid, v in sums.items()}


def project_embeddings(project, modality: str = "dna", selection: str = "novel"
                       ) -> tuple[list[int], np.ndarray, str]:
    """(specimen ids, (n, d) unit embeddings, models' sha256) of the selected specimens."""
    from engine.project import SpecimenFilter

    if modality not in PROJECT_MODALITIES:
        raise BioscanError(f"unknown modality {modality!r} (choose {', '.join(PROJECT_MODALITIES)})")
    if selection not in SELECTIONS:
        raise BioscanError(f"unknown selection {selection!r} (choose {' or '.join(SELECTIONS)})")
    parts, shas = [], set()
    for stored in PROJECT_MODALITIES[modality]:
        vecs, sha = _per_specimen(project, stored)
        parts.append(vecs)
        shas |= sha
    wanted = set.intersection(*(set(p) for p in parts))
    if selection == "novel":
        wanted &= {r["id"] for r in project.iter_specimens(SpecimenFilter(novel=True))}
    ids = sorted(wanted)
    if not ids:
        return [], np.zeros((0, 0), dtype=np.float32), ""
    emb = np.hstack([np.stack([p[i] for i in ids]) for p in parts])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return ids, emb.astype(np.float32), ",".join(sorted(shas))


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------- putative species (the map)
@dataclass
class SpeciesMap:
    """A project's putative species: each mapped specimen in exactly one cluster, with its map position.

    Arrays and lists run in specimen id order. Cluster ids run 0..n_clusters-1, largest first.
    """

    specimen_ids: list[int]
    xy: np.ndarray  # (n, 2) map coordinates
    result: ClusterResult  # labels, sizes, representatives, distance_to_centroid, params
    sources: list[str]  # per specimen: "dna" (clustered by barcode identity) or "photo" (photo-only)
    rows: dict[int, dict[str, Any]]  # specimen id -> its Project.iter_specimens row
    consensus: dict[int, Consensus]  # cluster id -> the members' consensus call
    summary: str  # one line: how the clusters were made
    cached: bool  # read from the project file, not computed
    unmapped: int  # specimens with neither a usable barcode nor a photo embedding (not on the map)

    @property
    def labels(self) -> np.ndarray:
        return self.result.labels

    @property
    def n_clusters(self) -> int:
        return self.result.n_clusters

    @property
    def specimen_keys(self) -> list[str]:
        return [self.rows[i]["specimen_key"] for i in self.specimen_ids]

    def members(self, cluster_id: int) -> list[int]:
        """Specimen ids of one cluster."""
        return [self.specimen_ids[i] for i in np.flatnonzero(self.labels == cluster_id)]

    def without_close_match(self, cluster_id: int) -> bool:
        """Whether most of the cluster's members were called novel: no library species is close to them."""
        return self.consensus[cluster_id].novel_fraction > NO_MATCH_MAJORITY

    def no_close_match(self) -> list[int]:
        """The clusters without a close library match, largest first."""
        return [cid for cid in range(self.n_clusters) if self.without_close_match(cid)]

    def cluster_rows(self) -> list[dict[str, object]]:
        """One CLUSTER_COLUMNS row per specimen, as `bioscan cluster` writes them (specimen_id = its key)."""
        return cluster_rows(self.specimen_keys, self.result, [call_from_row(self.rows[i]) for i in self.specimen_ids])


@dataclass
class _SpeciesInputs:
    """What a putative-species map is computed from, as read from the project in one snapshot."""

    dna: list[tuple[int, int, str, str]]  # (specimen id, item id, cleaned sequence, model sha256), one per specimen
    photo: list[tuple[int, int, str, str]]  # (specimen id, item id, file sha256, model sha256) of photo-only ones
    key: str

    @property
    def specimen_ids(self) -> list[int]:
        return sorted({r[0] for r in self.dna} | {r[0] for r in self.photo})


def _species_inputs(project, params: dict[str, Any]) -> _SpeciesInputs:
    dna = project.best_barcodes()
    photo = project.embedded_photos({r[0] for r in dna})
    h = hashlib.sha256(json.dumps({"version": SPECIES_MAP_VERSION, **params}, sort_keys=True).encode())
    for part, rows in (("dna", dna), ("photo", photo)):
        h.update(part.encode())
        for row in rows:
            h.update("\t".join(map(str, row)).encode() + b"\n")
    return _SpeciesInputs(dna, photo, h.hexdigest())


def _read_species_cache(project, inputs: _SpeciesInputs) -> tuple[np.ndarray, ClusterResult, list[str], str] | None:
    """(xy, result, sources, summary) of the cached map if it was made from exactly these inputs."""
    if "species_maps" not in project.db.table_names():
        return None
    head = project.conn.execute("SELECT n, params, summary, silhouette, approximations FROM species_maps "
                                "WHERE cache_key = ?", [inputs.key]).fetchone()
    if head is None:
        return None
    points = project.conn.execute("SELECT specimen_id, cluster_id, x, y, distance_to_centroid, source "
                                  "FROM species_map_points ORDER BY specimen_id").fetchall()
    if len(points) != head[0] or [p[0] for p in points] != inputs.specimen_ids:
        return None
    labels = np.array([p[1] for p in points], dtype=np.int64)
    xy = np.array([(p[2], p[3]) for p in points], dtype=np.float32).reshape(-1, 2)
    dist = np.array([np.nan if p[4] is None else p[4] for p in points], dtype=np.float32)
    result = ClusterResult(labels=labels, method="identity", params=json.loads(head[1]),
                           silhouette=float("nan") if head[3] is None else head[3], distance_to_centroid=dist,
                           sizes=np.bincount(labels, minlength=int(labels.max()) + 1 if len(labels) else 0),
                           representatives=representatives(labels, dist), reduced=np.zeros((len(labels), 0)),
                           approximations=json.loads(head[4]))
    return xy, result, [p[5] for p in points], head[2]


def _write_species_cache(project, inputs: _SpeciesInputs, ids: list[int], xy: np.ndarray, result: ClusterResult,
                         sources: list[str], summary: str) -> None:
    """Replace the cached map, in one transaction: a crash mid-write leaves the previous map (or none)."""
    from engine.project import now_iso

    with project.transaction() as conn:
        create_cluster_cache_tables(project.db)
        conn.execute("DELETE FROM species_map_points")
        conn.execute("DELETE FROM species_maps")
        conn.execute("INSERT INTO species_maps (cache_key, version, n, params, summary, silhouette, approximations, "
                     "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [inputs.key, SPECIES_MAP_VERSION, len(ids), json.dumps(result.params), summary,
                      None if np.isnan(result.silhouette) else float(result.silhouette),
                      json.dumps(result.approximations), now_iso()])
        conn.executemany("INSERT INTO species_map_points (specimen_id, cluster_id, x, y, distance_to_centroid, source) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         ((sid, int(c), float(p[0]), float(p[1]), None if np.isnan(d) else float(d), src)
                          for sid, c, p, d, src in zip(ids, result.labels, xy, result.distance_to_centroid, sources)))


def _unit(mat: np.ndarray) -> np.ndarray:
    mat = np.asarray(mat, dtype=np.float32)
    return mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)


def _layout(parts: list[np.ndarray], seed: int, progress: ProgressCallback) -> np.ndarray:
    """One 2-D map of the parts' rows, in order: a single UMAP when they share a space (photos are embedded
    into the DNA model's space), else one per part, side by side."""
    parts = [p for p in parts if len(p)]
    if len({p.shape[1] for p in parts}) == 1:
        return reduce_2d(np.vstack(parts), seed=seed, progress=progress)
    out, right = [], 0.0
    for p in parts:
        xy = reduce_2d(p, seed=seed, progress=progress)
        width = float(np.ptp(xy[:, 0])) if len(xy) > 1 else 1.0
        xy[:, 0] += right - xy[:, 0].min() + (0.1 * width if out else 0.0)
        right = float(xy[:, 0].max())
        out.append(xy)
    return np.vstack(out)


def _species_vectors(project, inputs: _SpeciesInputs) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of the inputs: the chosen barcode's per DNA specimen, the mean photo per photo-only one."""
    dna = np.zeros((0, 0), dtype=np.float32)
    if inputs.dna:
        index, mat = project.embedding_rows("dna")
        dna = _unit(mat[[index[r[1]] for r in inputs.dna]])
    photo = np.zeros((0, 0), dtype=np.float32)
    if inputs.photo:
        means = _mean_by_specimen(*project.embeddings("photo"))
        photo = _unit(np.stack([means[sid] for sid in sorted({r[0] for r in inputs.photo})]))
    return dna, photo


def _compute_species(inputs: _SpeciesInputs, vectors: tuple[np.ndarray, np.ndarray], threshold: float | None,
                     seed: int, progress: ProgressCallback
                     ) -> tuple[list[int], np.ndarray, ClusterResult, list[str], str]:
    from engine.cluster.identity import cluster_by_identity

    dna_ids = [r[0] for r in inputs.dna]
    photo_ids = sorted({r[0] for r in inputs.photo})
    parts, labels, dists, texts, approx = [], [], [], [], []
    params: dict[str, Any] = {}
    silhouette = float("nan")
    if dna_ids:
        emb = vectors[0]
        res = cluster_by_identity([r[2] for r in inputs.dna], emb, threshold=threshold, seed=seed, progress=progress)
        parts.append(emb)
        labels.append(res.labels)
        dists.append(res.distance_to_centroid)
        params.update(res.params)
        silhouette = res.silhouette
        approx += res.approximations
        texts.append(f"{len(dna_ids):,} barcodes by identity on the neighbour graph: {res.n_clusters:,} clusters "
                     f"(threshold {res.params['threshold']:.1%}, {res.params['chosen_by']})")
    if photo_ids:
        emb = vectors[1]
        res = cluster_embeddings(emb, method="agglomerative", seed=seed, progress=progress)
        parts.append(emb)
        labels.append(res.labels + (int(labels[0].max()) + 1 if labels else 0))
        dists.append(res.distance_to_centroid)
        params["photo_only"] = {"specimens": len(photo_ids), **res.params}
        if not dna_ids:
            silhouette = res.silhouette
        approx += res.approximations
        texts.append(f"{len(photo_ids):,} photo-only specimens by their photo embeddings: {res.n_clusters:,} "
                     f"clusters (agglomerative, k {res.params.get('chosen_by', 'caller')})")
    report(progress, 0, 1, "computing the 2-D map (UMAP)")
    xy = _layout(parts, seed, progress)
    ids = dna_ids + photo_ids
    order = np.argsort(ids, kind="stable")
    ids = [ids[i] for i in order]
    all_labels = _relabel_by_size(np.concatenate(labels)[order])
    dist = np.concatenate(dists)[order].astype(np.float32)
    sources = (["dna"] * len(dna_ids) + ["photo"] * len(photo_ids))
    sources = [sources[i] for i in order]
    result = ClusterResult(labels=all_labels, method="identity", params=params, silhouette=silhouette,
                           distance_to_centroid=dist, sizes=np.bincount(all_labels),
                           representatives=representatives(all_labels, dist), reduced=np.zeros((len(ids), 0)),
                           approximations=approx)
    return ids, xy[order], result, sources, "; ".join(texts)


def map_project_species(project_path: str | Path, threshold: float | None = None, seed: int = 0,
                        use_cache: bool = True, cached_only: bool = False,
                        progress: ProgressCallback = None) -> SpeciesMap | None:
    """A project's putative species for the cluster map, from the cache in the project when it is current.

    ``threshold`` fixes the identity threshold (default: the barcode gap, as `bioscan cluster`).
    With ``cached_only`` nothing is computed: None when the cache is missing or stale (the file
    is then only read). Otherwise a computed map replaces the cache, in one transaction.
    """
    from engine.project import open_project

    params = {"threshold": threshold, "seed": seed}
    with open_project(project_path, readonly=cached_only) as project:
        with _snapshot(project):
            inputs = _species_inputs(project, params)
            cached = _read_species_cache(project, inputs) if use_cache or cached_only else None
            if cached is None and cached_only:
                return None
            if cached is None and not inputs.specimen_ids:
                raise BioscanError(f"{Path(project_path).name}: no specimen has a usable barcode or an embedded "
                                   "photo to cluster")
            vectors = None if cached is not None else _species_vectors(project, inputs)
        if cached is not None:
            ids = inputs.specimen_ids
            xy, result, sources, summary = cached
        else:
            ids, xy, result, sources, summary = _compute_species(inputs, vectors, threshold, seed, progress)
            _write_species_cache(project, inputs, ids, xy, result, sources, summary)
        rows = {r["id"]: r for r in project.iter_specimens()}
    consensus = consensus_taxonomy([call_from_row(rows[i]) for i in ids], result.labels)
    return SpeciesMap(ids, xy, result, sources, rows, consensus, summary, cached is not None, len(rows) - len(ids))


# ---------------------------------------------------------------------------- one modality, UMAP methods
@dataclass
class ProjectClusters:
    specimen_ids: list[int]
    specimen_keys: list[str]
    xy: np.ndarray  # (n, 2) map coordinates
    result: ClusterResult
    rows: list[dict[str, Any]]  # CLUSTER_COLUMNS rows, specimen_id = the specimen key
    map_cached: bool  # the 2-D map came from the project file
    clusters_cached: bool


def _cached_map(project, map_key: str, ids: list[int]) -> np.ndarray | None:
    if "cluster_maps" not in project.db.table_names():
        return None
    got = dict((r[0], (r[1], r[2])) for r in project.conn.execute(
        "SELECT specimen_id, x, y FROM cluster_map_points WHERE map_key = ?", [map_key]))
    if len(got) != len(ids):
        return None
    return np.array([got[i] for i in ids], dtype=np.float32)


def _cached_run(project, run_key: str, ids: list[int], emb: np.ndarray, method: str) -> ClusterResult | None:
    if "cluster_runs" not in project.db.table_names():
        return None
    run = project.conn.execute("SELECT params, silhouette, approximations FROM cluster_runs WHERE run_key = ?",
                               [run_key]).fetchone()
    if run is None:
        return None
    got = dict(project.conn.execute("SELECT specimen_id, cluster_id FROM cluster_labels WHERE run_key = ?",
                                    [run_key]).fetchall())
    if len(got) != len(ids):
        return None
    labels = np.array([got[i] for i in ids], dtype=np.int64)
    dist, sizes, reps = cluster_summary(emb, labels)
    return ClusterResult(labels=labels, method=method, params=json.loads(run[0]),
                         silhouette=float("nan") if run[1] is None else run[1], distance_to_centroid=dist,
                         sizes=sizes, representatives=reps, reduced=emb, approximations=json.loads(run[2]))


def cluster_project(project_path: str | Path, modality: str = "dna", selection: str = "novel",
                    seed: int = 0, use_cache: bool = True, progress: ProgressCallback = None,
                    **options) -> ProjectClusters:
    """Map and cluster a project's specimens; results are cached in the project (opened writable).

    ``options`` go to cluster_embeddings (method, n_clusters, min_cluster_size, umap_dims).
    """
    from engine.project import now_iso, open_project

    with open_project(project_path) as project:
        ids, emb, sha = project_embeddings(project, modality, selection)
        if len(ids) < 2:
            raise BioscanError(f"{Path(project_path).name}: fewer than 2 {selection} specimens with "
                               f"{modality} embeddings to cluster")
        map_key = _key(modality, sha, seed, ids)
        method = options.get("method", "agglomerative")
        run_key = _key(map_key, sorted(options.items()))
        xy = _cached_map(project, map_key, ids) if use_cache else None
        map_cached = xy is not None
        result = _cached_run(project, run_key, ids, emb, method) if use_cache else None
        clusters_cached = result is not None
        if xy is None:
            xy = reduce_2d(emb, seed=seed, progress=progress)
        if result is None:
            result = cluster_embeddings(emb, seed=seed, progress=progress, **options)
        if not (map_cached and clusters_cached):
            stamp = now_iso()
            with project.transaction():
                create_cluster_cache_tables(project.db)
                project.db["cluster_maps"].upsert({"map_key": map_key, "modality": modality, "model_sha256": sha,
                                                   "seed": seed, "n": len(ids), "created_at": stamp},
                                                  pk="map_key")
                project.db["cluster_map_points"].upsert_all(
                    ({"map_key": map_key, "specimen_id": i, "x": float(p[0]), "y": float(p[1])}
                     for i, p in zip(ids, xy)), pk=("map_key", "specimen_id"))
                project.db["cluster_runs"].upsert({
                    "run_key": run_key, "map_key": map_key, "method": method,
                    "options": json.dumps(options, sort_keys=True), "params": json.dumps(result.params),
                    "silhouette": None if np.isnan(result.silhouette) else result.silhouette,
                    "approximations": json.dumps(result.approximations), "created_at": stamp}, pk="run_key")
                project.db["cluster_labels"].upsert_all(
                    ({"run_key": run_key, "specimen_id": i, "cluster_id": int(c),
                      "distance_to_centroid": None if np.isnan(d) else float(d)}
                     for i, c, d in zip(ids, result.labels, result.distance_to_centroid)),
                    pk=("run_key", "specimen_id"))
        rows_by_id = {r["id"]: r for r in project.iter_specimens()}
    keys = [rows_by_id[i]["specimen_key"] for i in ids]
    rows = cluster_rows(keys, result, [call_from_row(rows_by_id[i]) for i in ids])
    return ProjectClusters(ids, keys, xy, result, rows, map_cached, clusters_cached)
