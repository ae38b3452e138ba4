"""A project's specimens as the CSV `bioscan identify` writes, plus photo paths and reviews."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from engine.export.csv_writer import write_csv
from engine.export.provenance import library_text, model_text, notes_text, unverified_text, with_provenance
from engine.photo_labels import photo_call_cells
from engine.records import RANKS, Match, Taxonomy

EXTRA_COLUMNS = ["processid", "sampleid", "photo_paths", "disagreement_rank", "conflict_rank",
                 "call_run", "call_date", "call_models", "call_library", "review",
                 *(f"reviewed_{r}" for r in RANKS), "reviewed_by", "reviewed_at", "unverified_names", "review_notes"]


def project_columns() -> list[str]:
    from engine.identify import RESULT_COLUMNS

    return list(RESULT_COLUMNS) + EXTRA_COLUMNS


def _round(value, digits: int = 4):
    return "" if value is None else round(value, digits)


def call_matches(project, item_id: int | None) -> list[Match]:
    """The stored matches of the item that made a specimen's call, best first."""
    if item_id is None:
        return []
    rows = project.conn.execute(
        'SELECT record_id, similarity, identity, overlap, "order", family, genus, species, bin_uri FROM matches '
        "WHERE item_id = ? ORDER BY position", [item_id]).fetchall()
    return [Match(r[0], Taxonomy(order=r[4] or "", family=r[5] or "", genus=r[6] or "", species=r[7] or "",
                                 bin_uri=r[8] or ""), r[1], r[2], r[3]) for r in rows]


def specimen_rows(project, flt=None) -> Iterator[dict[str, Any]]:
    """``specimen_result_row`` of each specimen a filter (engine.project.SpecimenFilter) shows, with
    its call's evidence columns (engine.identify.EVIDENCE_COLUMNS) from the stored matches."""
    for s in with_provenance(project, project.iter_specimens(flt)):
        yield specimen_result_row(s, call_matches(project, s["call_item_id"]))


def specimen_result_row(s: dict[str, Any], matches: list[Match] | None = None) -> dict[str, Any]:
    """One specimen (a Project.iter_specimens row, with ``made`` and ``reviews`` from
    engine.export.provenance.with_provenance when there) in RESULT_COLUMNS terms plus the extra
    columns; the evidence columns from ``matches`` (its call's, best first; empty without)."""
    from engine.identify import evidence_cells

    dna = [p for m, p, _ in s["files"] if m == "dna"]
    photos = [p for m, p, _ in s["files"] if m == "photo"]
    called = s["call_item_id"] is not None
    row: dict[str, Any] = {
        "specimen_id": s["specimen_key"], "source_file": ";".join(dict.fromkeys(dna or photos)),
        "modality": s["call_modality"] or s["modalities"] or "", "status": s["status"],
        "confidence": _round(s["confidence"]), "top_match_id": s["top_match_id"] or "",
        "top_match_species": s["top_match_species"] or "", "top_similarity": _round(s["top_similarity"]),
        "identity": _round(s["identity"]), "novel": bool(s["novel"]) if called else "",
        "novel_rank": s["novel_rank"] or "", "qc_flags": s["qc_flags"] or "",
        "sequence_length": "" if s["sequence_length"] is None else s["sequence_length"], "error": s["error"] or "",
        "processid": s["processid"] or "", "sampleid": s["sampleid"] or "", "photo_paths": ";".join(photos),
        "review": s["review"] or "",
        "disagreement_rank": s.get("disagreement_rank") or "", "conflict_rank": s.get("conflict_rank") or "",
    }
    made, reviews = s.get("made") or [], s.get("reviews")
    row["call_run"] = ";".join(dict.fromkeys(str(m["run"]["id"]) for m in made if m["run"].get("id")))
    row["call_date"] = ";".join(dict.fromkeys(m["created_at"] or "" for m in made))
    row["call_models"] = "; ".join(model_text(x) for m in made for x in m["models"])
    row["call_library"] = "; ".join(dict.fromkeys(library_text(m["run"]) for m in made))
    override = (reviews or {}).get("override") if s["review"] == "overridden" else None
    row["reviewed_by"], row["reviewed_at"] = (override["user"], override["created_at"]) if override else ("", "")
    row["unverified_names"] = unverified_text(reviews) if override else ""
    row["review_notes"] = notes_text(reviews)
    for rank in RANKS:
        row[rank] = s[rank] or ""
        row["bin_confidence" if rank == "bin_uri" else f"{rank}_confidence"] = _round(s[f"{rank}_confidence"])
        row[f"reviewed_{rank}"] = (s[f"final_{rank}"] or "") if s["review"] == "overridden" else ""
    row.update(evidence_cells(matches or []))
    photo = next((m for m in made if m["modality"] == "image"), None)  # the photo call, or the photo fused in
    row.update(photo_call_cells(photo["call_references"], photo["call_reason"]) if photo else photo_call_cells("", ""))
    return row


def write_project_csv(project, path: str | Path, flt=None) -> int:
    """Write the specimens a filter (engine.project.SpecimenFilter; None: all) shows, atomic and
    formula-safe; returns rows written. `bioscan export` and the desktop app's Export both call it."""
    return write_csv(path, project_columns(), specimen_rows(project, flt))
