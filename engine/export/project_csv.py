"""A project's specimens as the CSV `bioscan identify` writes, plus photo paths and reviews."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from engine.export.csv_writer import write_csv
from engine.records import RANKS

EXTRA_COLUMNS = ["processid", "sampleid", "photo_paths", "review",
                 *(f"reviewed_{r}" for r in RANKS)]


def project_columns() -> list[str]:
    from engine.identify import RESULT_COLUMNS

    return list(RESULT_COLUMNS) + EXTRA_COLUMNS


def _round(value, digits: int = 4):
    return "" if value is None else round(value, digits)


def specimen_result_row(s: dict[str, Any]) -> dict[str, Any]:
    """One specimen (a Project.iter_specimens row) in RESULT_COLUMNS terms plus the extra columns."""
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
    }
    for rank in RANKS:
        row[rank] = s[rank] or ""
        row["bin_confidence" if rank == "bin_uri" else f"{rank}_confidence"] = _round(s[f"{rank}_confidence"])
        row[f"reviewed_{rank}"] = (s[f"final_{rank}"] or "") if s["review"] == "overridden" else ""
    return row


def write_project_csv(project, path: str | Path) -> int:
    """Write every specimen of a project (atomic, formula-safe); returns rows written."""
    rows: Iterator[dict[str, Any]] = (specimen_result_row(s) for s in project.iter_specimens())
    return write_csv(path, project_columns(), rows)
