"""Clustering results as one row per specimen, and the barcode-file workflow behind `bioscan cluster`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from engine.cluster.consensus import consensus_taxonomy
from engine.cluster.core import NOISE, ClusterResult, cluster_embeddings
from engine.progress import ProgressCallback
from engine.records import Barcode, Call, RecordError

if TYPE_CHECKING:
    from engine.identify import DnaIdentifier

CONSENSUS_RANKS = ("order", "family", "genus", "species", "bin_uri")
CLUSTER_COLUMNS = [
    "specimen_id", "source_file", "status", "cluster_id", "cluster_size", "distance_to_centroid",
    "representative_id", "is_representative",
    *(f"consensus_{r}" for r in CONSENSUS_RANKS), "consensus_rank", "consensus_agreement", "cluster_novel_fraction",
    "novel", "novel_rank", "error",
]
# status of a row: clustered | noise (HDBSCAN left it out) | not clustered (e.g. known, with --novel-only) | error


def cluster_rows(specimen_ids: Sequence[str], result: ClusterResult,
                 calls: Sequence[Call | None] | None = None) -> list[dict[str, object]]:
    """One CLUSTER_COLUMNS row per clustered item, in input order."""
    calls = calls if calls is not None else [None] * len(specimen_ids)
    consensus = consensus_taxonomy(calls, result.labels)
    rows = []
    for i, sid in enumerate(specimen_ids):
        row: dict[str, object] = {c: "" for c in CLUSTER_COLUMNS}
        cid = int(result.labels[i])
        row.update(specimen_id=sid, cluster_id=cid, status="noise" if cid == NOISE else "clustered")
        call = calls[i]
        if call is not None:
            row.update(novel=call.novel, novel_rank=call.novel_rank)
        if cid != NOISE:
            rep = int(result.representatives[cid])
            cons = consensus[cid]
            row.update(cluster_size=int(result.sizes[cid]),
                       distance_to_centroid=round(float(result.distance_to_centroid[i]), 5),
                       representative_id=specimen_ids[rep], is_representative=rep == i,
                       consensus_rank=cons.rank, consensus_agreement=round(cons.agreement, 4),
                       cluster_novel_fraction=round(cons.novel_fraction, 4),
                       **{f"consensus_{r}": cons.taxonomy.get(r) for r in CONSENSUS_RANKS})
        rows.append(row)
    return rows


def cluster_barcodes(
    records: Iterable[Barcode | RecordError],
    identifier: "DnaIdentifier",
    novel_only: bool = False,
    progress: ProgressCallback = None,
    **cluster_options,
) -> tuple[list[dict[str, object]], ClusterResult | None]:
    """Identify, embed and cluster barcode records; one row per record (bad records become error rows).

    ``cluster_options`` go to cluster_embeddings (method, n_clusters, seed, ...), or with
    method="identity" to engine.cluster.identity.cluster_by_identity (threshold, seed). The
    result is None when fewer than two specimens were left to cluster.
    """
    results = identifier.identify(records, progress=progress)
    rows: list[dict[str, object]] = []
    chosen: list[int] = []
    for res in results:
        row: dict[str, object] = {c: "" for c in CLUSTER_COLUMNS}
        row.update(specimen_id=res.specimen_id, source_file=res.source_file)
        if res.error:
            row.update(status="error", error=res.error)
        else:
            row.update(status="not clustered", novel=res.call.novel, novel_rank=res.call.novel_rank)
            if res.call.novel or not novel_only:
                chosen.append(len(rows))
        rows.append(row)
    if len(chosen) < 2:
        for i in chosen:
            rows[i]["error"] = "too few specimens to cluster"
        return rows, None
    emb = np.stack([results[i].embedding for i in chosen])
    if cluster_options.get("method") == "identity":
        from engine.cluster.identity import cluster_by_identity

        options = {k: v for k, v in cluster_options.items() if k != "method"}
        result = cluster_by_identity([results[i].qc.sequence for i in chosen], emb, progress=progress, **options)
    else:
        result = cluster_embeddings(emb, progress=progress, **cluster_options)
    clustered = cluster_rows([results[i].specimen_id for i in chosen], result, [results[i].call for i in chosen])
    for i, row in zip(chosen, clustered):
        row["source_file"] = rows[i]["source_file"]
        rows[i] = row
    return rows, result
