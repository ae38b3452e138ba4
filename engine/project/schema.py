"""Every table of a project file, its version and migrations, and the vocabulary they share.

The schema is documented in docs/project-database.md; keep the two in step. A migration brings
the schema from version-1 to version and runs inside the transaction that opens the project.
"""
from __future__ import annotations

import time

import numpy as np

from engine.records import RANKS

SCHEMA_VERSION = 6
EMBEDDING_DTYPE = np.float16  # as in the reference library
STATUSES = ("ok", "novel", "error", "pending")  # pending: photos only, no image model yet
REVIEW_ACTIONS = ("accept", "override", "annotate")
CALL_RANKS = RANKS  # order, family, genus, species, bin_uri
TAXON_TREE_RANKS = ("order", "family", "genus", "species")
# The columns of list_specimens rows, and the only ones it sorts and filters on.
SPECIMEN_LIST_COLUMNS = (
    "id", "specimen_key", "processid", "sampleid", "status", "modalities", "n_photos", "n_barcodes",
    "n_errors", "error", "call_modality", *CALL_RANKS, "confidence", "novel", "novel_rank", "top_match_id",
    *(f"{r}_confidence" for r in CALL_RANKS), "top_match_species", "top_similarity", "identity", "qc_flags",
    "sequence_length", "review", "disagreement_rank", "conflict_rank",
    *(f"final_{r}" for r in CALL_RANKS), "updated_at",
)



def now_iso() -> str:
    """A timestamp as every table stores it (UTC, ISO 8601, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def q(name: str) -> str:
    """A column name quoted for SQL (``order`` is a keyword)."""
    return f'"{name}"'


# ------------------------------------------------------------------------------ schema
def _create_v1(db) -> None:
    """Schema version 1 (see docs/project-database.md)."""
    tax = {r: str for r in CALL_RANKS}
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["import_runs"].create({
        "id": int, "started_at": str, "finished_at": str, "status": str, "app_version": str,
        "library_id": str, "library_path": str, "library_sha256": str, "models": str, "settings": str,
        "inputs": str, "counts": str, "message": str,
    }, pk="id")
    db["files"].create({
        "id": int, "path": str, "name": str, "kind": str, "size": int, "mtime_ns": int, "sha256": str,
        "status": str, "error": str, "done": int, "records": int, "run_id": int, "updated_at": str,
    }, pk="id", not_null={"path", "kind"})
    db["files"].create_index(["path"], unique=True)
    db["specimens"].create({
        "id": int, "specimen_key": str, "processid": str, "sampleid": str, "status": str,
        "modalities": str, "n_photos": int, "n_barcodes": int, "n_errors": int, "error": str,
        "call_modality": str, "call_item_id": int, **tax, "confidence": float,
        **{f"{r}_confidence": float for r in CALL_RANKS}, "novel": int, "novel_rank": str,
        "top_match_id": str, "top_match_species": str, "top_similarity": float, "identity": float,
        "qc_flags": str, "sequence_length": int, "metadata": str,
        "review": str, **{f"final_{r}": str for r in CALL_RANKS},
        "run_id": int, "created_at": str, "updated_at": str,
    }, pk="id", not_null={"specimen_key", "status"}, defaults={"review": "", "n_errors": 0})
    db["specimens"].create_index(["specimen_key"], unique=True)
    for cols in (["status"], ["order", "family", "genus", "species"], ["family"], ["genus"], ["species"],
                 ["final_order", "final_family", "final_genus", "final_species"], ["final_family"],
                 ["final_species"], ["confidence"], ["processid"], ["sampleid"], ["review"]):
        db["specimens"].create_index(cols)
    db["aliases"].create({"alias": str, "specimen_key": str, "source": str}, pk="alias")
    db["metadata_records"].create({"key": str, "processid": str, "sampleid": str, "file_id": int,
                                   "data": str}, pk="key")
    db["items"].create({
        "id": int, "specimen_id": int, "file_id": int, "record_key": str, "modality": str, "status": str,
        "error": str, "file_sha256": str,
        # DNA: the cleaned sequence and its QC
        "sequence": str, "raw_length": int, "sequence_length": int, "ambiguous_fraction": float,
        "reverse_complemented": int, "stop_codons": int, "qc_flags": str,
        # photos: what load_photo saw (thumbnail-worthy facts)
        "width": int, "height": int, "image_format": str, "image_mode": str, "frames": int,
        "exif_orientation": int,
        # the item's own call (the specimen shows the best item's)
        "novel": int, "novel_rank": str, "confidence": float, "given": str,
        "run_id": int, "created_at": str,
    }, pk="id", not_null={"file_id", "record_key", "modality", "status"},
        foreign_keys=[("specimen_id", "specimens", "id"), ("file_id", "files", "id")])
    db["items"].create_index(["file_id", "record_key"], unique=True)
    db["items"].create_index(["specimen_id"])
    db["calls"].create({"item_id": int, "specimen_id": int, "modality": str, "rank": str, "name": str,
                        "confidence": float}, pk=("item_id", "rank"))
    db["calls"].create_index(["specimen_id"])
    db["matches"].create({"item_id": int, "specimen_id": int, "modality": str, "position": int,
                          "record_id": str, "similarity": float, "identity": float, **tax},
                         pk=("item_id", "position"))
    db["matches"].create_index(["specimen_id"])
    db["embeddings"].create({"item_id": int, "specimen_id": int, "modality": str, "model_sha256": str,
                             "dim": int, "vector": bytes}, pk="item_id")
    db["embeddings"].create_index(["modality"])
    db["annotations"].create({
        "id": int, "specimen_id": int, "action": str, **tax, "note": str, "user": str, "created_at": str,
        "machine_call": str,
    }, pk="id", not_null={"specimen_id", "action", "user", "created_at"})
    db["annotations"].create_index(["specimen_id", "id"])


def _indexes_v2(db) -> None:
    """Version 2: indexes for the taxon columns the GUI's table sorts by that v1 lacked (a sort of a
    100,000-specimen project by genus without one took 706 ms a page deep in the table), and
    ``disagreement_rank``: where a specimen's photo and barcode name different taxa (engine.fuse)."""
    for col in ("final_genus", "final_bin_uri", "bin_uri"):
        db["specimens"].create_index([col], if_not_exists=True)
    if "disagreement_rank" not in db["specimens"].columns_dict:
        db["specimens"].add_column("disagreement_rank", str, not_null_default="")


def _conflicts_v3(db) -> None:
    """Version 3: ``conflict_rank``, where two barcodes of one specimen (the same id in two files)
    name different taxa (engine.project.summary), and an index to find a file's content imported
    from another path (a moved or copied folder) by its sha256."""
    if "conflict_rank" not in db["specimens"].columns_dict:
        db["specimens"].add_column("conflict_rank", str, not_null_default="")
    db["files"].create_index(["sha256"], if_not_exists=True)


def _overlap_v4(db) -> None:
    """Version 4: ``matches.overlap``, the aligned length (bp) behind a match's identity, kept for the
    closest reference of each of the best three species (engine.identify.species_evidence)."""
    if "overlap" not in db["matches"].columns_dict:
        db["matches"].add_column("overlap", int)


def _unverified_names_v5(db) -> None:
    """Version 5: ``annotations.unverified_names``, the names of an override (JSON rank -> name) the
    reference library does not know at that rank and the user confirmed anyway (engine.taxonomy_check)."""
    if "unverified_names" not in db["annotations"].columns_dict:
        db["annotations"].add_column("unverified_names", str)


def _photo_call_words_v6(db) -> None:
    """Version 6: a photo item's ``call_reason`` (why ranks were left uncalled, engine.photo_labels)
    and ``call_references`` ("image": matched against photo references; "dna": the fallback against
    DNA references), so exports and the GUI say what the photo's call rests on."""
    for col in ("call_reason", "call_references"):
        if col not in db["items"].columns_dict:
            db["items"].add_column(col, str)


MIGRATIONS = {1: _create_v1, 2: _indexes_v2, 3: _conflicts_v3, 4: _overlap_v4,
              5: _unverified_names_v5, 6: _photo_call_words_v6}  # version -> function bringing the schema from version-1 to version


def create_cluster_cache_tables(db) -> None:
    """The cluster caches of a project file (sqlite-utils ``Database``); a no-op when they exist.

    - ``species_maps`` (cache_key, version, n, params, summary, silhouette, approximations,
      created_at) and ``species_map_points`` (specimen_id, cluster_id, x, y,
      distance_to_centroid, source): the one current putative-species map of map_project_species;
    - ``cluster_maps`` (map_key, modality, model_sha256, seed, n, created_at) and
      ``cluster_map_points`` (map_key, specimen_id, x, y): cluster_project's UMAP maps;
    - ``cluster_runs`` (run_key, map_key, method, options, params, silhouette, approximations,
      created_at) and ``cluster_labels`` (run_key, specimen_id, cluster_id, distance_to_centroid).
    """
    tables = {
        "species_maps": ({"cache_key": str, "version": int, "n": int, "params": str, "summary": str,
                          "silhouette": float, "approximations": str, "created_at": str}, "cache_key"),
        "species_map_points": ({"specimen_id": int, "cluster_id": int, "x": float, "y": float,
                                "distance_to_centroid": float, "source": str}, "specimen_id"),
        "cluster_maps": ({"map_key": str, "modality": str, "model_sha256": str, "seed": int, "n": int,
                          "created_at": str}, "map_key"),
        "cluster_map_points": ({"map_key": str, "specimen_id": int, "x": float, "y": float},
                               ("map_key", "specimen_id")),
        "cluster_runs": ({"run_key": str, "map_key": str, "method": str, "options": str, "params": str,
                          "silhouette": float, "approximations": str, "created_at": str}, "run_key"),
        "cluster_labels": ({"run_key": str, "specimen_id": int, "cluster_id": int, "distance_to_centroid": float},
                           ("run_key", "specimen_id")),
    }
    for name, (columns, pk) in tables.items():
        db[name].create(columns, pk=pk, if_not_exists=True)
