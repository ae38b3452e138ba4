"""Clustering a project database's specimens, with the 2-D map and the clusters cached in it.

A thin layer over engine.cluster and engine.project. One point per specimen: a specimen
with several barcodes (or photos) gets the normalised mean of their embeddings; the "fused"
modality joins a specimen's DNA and photo embeddings (each normalised, concatenated, equal
weight), for specimens that have both.

Cache tables, created here with sqlite-utils in the project file:
- ``cluster_maps`` (map_key, modality, model_sha256, seed, n, created_at) and
  ``cluster_map_points`` (map_key, specimen_id, x, y): the UMAP 2-D map;
- ``cluster_runs`` (run_key, map_key, method, options, params, silhouette, approximations,
  created_at) and ``cluster_labels`` (run_key, specimen_id, cluster_id, distance_to_centroid).
``map_key`` is a sha256 of the modality, the embedding models' sha256, the seed and the
specimen ids, so a map is reused only for exactly the same specimens embedded by the same
model; ``run_key`` adds the clustering method and the options asked for.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.cluster.core import ClusterResult, cluster_embeddings, cluster_summary, reduce_2d
from engine.cluster.table import cluster_rows
from engine.errors import BioscanError
from engine.progress import ProgressCallback
from engine.records import RANKS, Call, RankCall

PROJECT_MODALITIES = {"dna": ("dna",), "image": ("photo",), "fused": ("dna", "photo")}
SELECTIONS = ("novel", "all")


@dataclass
class ProjectClusters:
    specimen_ids: list[int]
    specimen_keys: list[str]
    xy: np.ndarray  # (n, 2) map coordinates
    result: ClusterResult
    rows: list[dict[str, Any]]  # CLUSTER_COLUMNS rows, specimen_id = the specimen key
    map_cached: bool  # the 2-D map came from the project file
    clusters_cached: bool


def call_from_row(row: dict[str, Any]) -> Call | None:
    """The machine call of a project specimens row (None for errors and pending photos)."""
    if row.get("status") not in ("ok", "novel"):
        return None
    ranks = {r: RankCall(r, row.get(r) or "", float(row.get(f"{r}_confidence") or 0.0)) for r in RANKS}
    return Call(ranks, novel=bool(row.get("novel")), novel_rank=row.get("novel_rank") or "")


def _per_specimen(project, modality: str) -> tuple[dict[int, np.ndarray], set[str]]:
    """specimen id -> normalised mean embedding of one stored modality, and the models' sha256."""
    rows = project.conn.execute("SELECT specimen_id, model_sha256 FROM embeddings WHERE modality = ? "
                                "ORDER BY item_id", [modality]).fetchall()
    ids, mat = project.embeddings(modality)
    sums: dict[int, np.ndarray] = {}
    for sid, vec in zip(ids, mat):
        sums[sid] = sums[sid] + vec if sid in sums else vec.astype(np.float64)
    return ({sid: (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32) for sid, v in sums.items()},
            {r[1] or "" for r in rows})


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


def _ensure_tables(db) -> None:
    if "cluster_maps" in db.table_names():
        return
    db["cluster_maps"].create({"map_key": str, "modality": str, "model_sha256": str, "seed": int, "n": int,
                               "created_at": str}, pk="map_key")
    db["cluster_map_points"].create({"map_key": str, "specimen_id": int, "x": float, "y": float},
                                    pk=("map_key", "specimen_id"))
    db["cluster_runs"].create({"run_key": str, "map_key": str, "method": str, "options": str, "params": str,
                               "silhouette": float, "approximations": str, "created_at": str}, pk="run_key")
    db["cluster_labels"].create({"run_key": str, "specimen_id": int, "cluster_id": int,
                                 "distance_to_centroid": float}, pk=("run_key", "specimen_id"))


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
                _ensure_tables(project.db)
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
