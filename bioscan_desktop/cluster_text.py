"""Words the cluster map shows about a project's putative species (Qt-free, unit-testable).

``species_map`` is an engine.cluster.project.SpeciesMap. Clusters are numbered from 1 on screen
(cluster id 0, the largest, is "species 1").
"""
from __future__ import annotations

from typing import Any

from bioscan_desktop.presenters import STATUS_LABELS

NAME_RANKS = ("species", "genus", "family", "order")  # finest first: what a cluster or a point is called


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def headline(species_map: Any) -> str:
    """"N putative species (M with no close library match)"."""
    n, m = species_map.n_clusters, len(species_map.no_close_match())
    return f"{n:,} putative species ({m:,} with no close library match)"


def coverage_text(species_map: Any) -> str:
    """What the map holds: barcodes and photo-only specimens, and what was left off."""
    dna = sum(1 for s in species_map.sources if s == "dna")
    parts = [_count(dna, "specimen by its barcode", "specimens by their barcodes")]
    if len(species_map.sources) > dna:
        parts.append(_count(len(species_map.sources) - dna, "photo-only specimen", "photo-only specimens"))
    text = "Mapped " + " and ".join(parts)
    if species_map.unmapped:
        text += (f"; {_count(species_map.unmapped, 'specimen', 'specimens')} without a usable barcode or "
                 "identified photo not on the map")
    return text + (" (read from the project)." if species_map.cached else ".")


def cluster_name(species_map: Any, cluster_id: int) -> str:
    """The finest name a majority of the cluster's members were called, or why there is none."""
    consensus = species_map.consensus[cluster_id]
    name = next((consensus.taxonomy.get(r) for r in NAME_RANKS if consensus.taxonomy.get(r)), "")
    if species_map.without_close_match(cluster_id):
        return f"no close match{f' (in {name})' if name else ''}"
    return name or "no majority call"


def cluster_label(species_map: Any, cluster_id: int) -> str:
    """A legend or list entry: "species 3: Aedes vexans (14)"."""
    size = int(species_map.result.sizes[cluster_id])
    return f"species {cluster_id + 1}: {cluster_name(species_map, cluster_id)} ({size:,})"


def selection_label(species_map: Any, cluster_id: int) -> str:
    """The results table's filter chip for one selected cluster."""
    size = int(species_map.result.sizes[cluster_id])
    return f"putative species {cluster_id + 1} on the map: {_count(size, 'specimen', 'specimens')}"


def cluster_choices(species_map: Any) -> list[tuple[str, int]]:
    """(label, cluster id) for a picker: clusters with no close library match first, each group largest first."""
    unmatched = species_map.no_close_match()
    rest = [c for c in range(species_map.n_clusters) if not species_map.without_close_match(c)]
    return [(cluster_label(species_map, c), c) for c in unmatched + rest]


def point_text(species_map: Any, index: int) -> str:
    """A hovered point: "<specimen key>: <name> · <status> · species N"."""
    sid = species_map.specimen_ids[index]
    row = species_map.rows.get(sid, {})
    name = next((row.get(f"final_{r}") for r in NAME_RANKS if row.get(f"final_{r}")), "not called")
    cluster = int(species_map.labels[index])
    return (f"{row.get('specimen_key', sid)}: {name} · {STATUS_LABELS.get(row.get('status'), '')}"
            + (f" · species {cluster + 1}" if cluster >= 0 else ""))
