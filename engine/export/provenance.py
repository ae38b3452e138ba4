"""Who or what made each call, and the flags a specimen carries, as the exports write them.

Both exports (the project CSV and the Darwin Core Archive) read a specimen's provenance from the
items that made its call (Project.call_provenance: their import run, its models of that modality
and its library), never from the latest import run: a re-import that only added photos does not
credit the barcode calls to the image model. An override is credited to its reviewer.
"""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

CHUNK = 500  # specimens whose provenance is read in one query


def model_text(model: dict[str, Any]) -> str:
    """"bioscan-dna-cnn 1.1.0 (int8, sha256 1a2b3c4d5e6f…)"."""
    details = ", ".join(p for p in (model.get("precision") or "",
                                    f"sha256 {model['sha256'][:12]}…" if model.get("sha256") else "") if p)
    return f"{model.get('name', '?')} {model.get('version', '')}".strip() + (f" ({details})" if details else "")


def library_text(run: dict[str, Any]) -> str:
    """"bioscan-default (library id 5f…, sha256 9c…)" of an import run, or "" if it recorded none."""
    if not run.get("library_id") and not run.get("library_path"):
        return ""
    name = Path(run["library_path"]).name if run.get("library_path") else "library"
    for suffix in (".db", ".bioscanlib", ".sqlite"):
        name = name.removesuffix(suffix)
    ids = [f"library id {run['library_id']}" if run.get("library_id") else "",
           f"sha256 {run['library_sha256'][:12]}…" if run.get("library_sha256") else ""]
    return f"{name} ({', '.join(i for i in ids if i)})"


def machine_identified_by(made: list[dict[str, Any]]) -> str:
    """The models (and library) that made a call: one clause per item that made it."""
    parts = []
    for m in made:
        models = ", ".join(model_text(x) for x in m["models"]) or f"{m['modality']} model not recorded"
        library = library_text(m["run"])
        parts.append(models + (f" against {library}" if library else ""))
    return "; ".join(dict.fromkeys(parts))


def flag_remarks(s: dict[str, Any]) -> list[str]:
    """A specimen's disagreement and conflict flags, in words."""
    out = []
    if s.get("disagreement_rank"):
        out.append(f"photo and barcode disagree at {s['disagreement_rank']}")
    if s.get("conflict_rank"):
        out.append(f"two barcodes of this specimen disagree at {s['conflict_rank']}")
    return out


def notes_text(review: dict[str, Any] | None) -> str:
    """Every review note of a specimen, oldest first: "note (user, time)"."""
    return " | ".join(f"{note} ({user}, {at})" for user, at, _, note in (review or {}).get("notes", []))


def unverified_text(review: dict[str, Any] | None) -> str:
    """The override's names the library does not know: "family Carabidea"."""
    override = (review or {}).get("override") or {}
    return "; ".join(f"{rank} {name}" for rank, name in (override.get("unverified_names") or {}).items())


def with_provenance(project, specimens: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each specimen row with ``made`` (the items that made its call, Project.call_provenance; [] when
    uncalled) and ``reviews`` (its review notes and latest override, Project.reviews; None when none)."""
    reviews = project.reviews()
    it = iter(specimens)
    while chunk := list(islice(it, CHUNK)):
        made = project.call_provenance([s["id"] for s in chunk if s["call_item_id"] is not None])
        for s in chunk:
            s["made"] = made.get(s["id"], [])
            s["reviews"] = reviews.get(s["id"])
            yield s
