"""Words and numbers the views show, computed from engine results (Qt-free, unit-testable).

No identification happens here: these only compare and format what the engine stored.
"""
from __future__ import annotations

from typing import Any, Callable

from engine.project import CALL_RANKS, SpecimenDetail

RANK_LABELS = {"order": "Order", "family": "Family", "genus": "Genus", "species": "Species", "bin_uri": "BIN"}
STATUS_LABELS = {
    "ok": "Identified",
    "novel": "Novel",
    "error": "Error",
    "pending": "Pending",
}
STATUS_HELP = {
    "ok": "named from its closest references in the library",
    "novel": "no close reference: probably a species (or higher taxon) the library lacks",
    "error": "could not be processed; see the error message",
    "pending": "photos only; no image model has identified them yet",
}
REVIEW_LABELS = {"": "", "accepted": "Accepted", "overridden": "Overridden", "stale": "Accepted (call changed since)"}
STATUS_COLORS = {"ok": "#2e7d32", "novel": "#6a1b9a", "error": "#c62828", "pending": "#8d6e00"}  # the one map
REVIEWABLE_STATUSES = ("ok", "novel")  # a call to accept: identified or flagged novel
NOT_REVIEWED = ("", "stale")  # never reviewed, or accepted before a later import changed the call
IDENTITY_TIP = ("percent identity of the aligned barcodes (the reference library keeps sequences); "
                "empty when the library keeps none")
SIMILARITY_TIP = ("cosine similarity of the DNA model's embeddings (1 = identical embedding); "
                  "not a percent identity: 0.80 can be a different genus")


def confidence_text(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def number_text(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def identity_text(value: float | None) -> str:
    """Alignment identity as BOLD users read it: 98.7%."""
    return "" if value is None else f"{value:.1%}"


def similarity_text(value: float | None) -> str:
    """Embedding similarity (a cosine): a plain number, never a percent, so it is not read as identity."""
    return number_text(value, 2)


def match_scores_note(has_identity: bool) -> str:
    """What the Matches tab's scores are."""
    if has_identity:
        return ("Ranked by <b>identity</b> (percent identity of the aligned barcodes); <b>embedding "
                "similarity</b> is the DNA model's cosine (1 = identical embedding), not a percent.")
    return ("This reference library keeps no sequences, so the matches are ranked by <b>embedding "
            "similarity</b> only: the DNA model's cosine (1 = identical embedding), not a percent identity.")


def status_text(status: str, novel_rank: str = "") -> str:
    label = STATUS_LABELS.get(status, status)
    if status == "novel" and novel_rank:
        label += f" ({RANK_LABELS.get(novel_rank, novel_rank).lower()})"
    return label


def finest_name(row: dict[str, Any], prefix: str = "final_") -> tuple[str, str]:
    """(rank, name) of the finest called rank of a row's effective (or machine, prefix='') call."""
    for rank in reversed(CALL_RANKS[:4]):  # BIN is shown apart: it is not a Linnaean name
        name = row.get(f"{prefix}{rank}") or ""
        if name:
            return rank, name
    return "", ""


def shown_call(row: dict[str, Any]) -> tuple[str, str, float | None]:
    """(rank, name, confidence) of the call a specimen shows: its finest called Linnaean rank (BIN apart).

    The confidence is the engine's at that rank, so a species called at 98 % shows 98 % even when
    the BIN below it was called at 57 %; None when the name is the user's override (no machine
    confidence) or nothing is called.
    """
    rank, name = finest_name(row)
    if not rank or (row.get(rank) or "") != name:
        return rank, name, None
    return rank, name, row.get(f"{rank}_confidence")


def needs_review(row: dict[str, Any]) -> bool:
    """A call nobody has reviewed yet (or whose accepted call a later import changed)."""
    return row.get("status") in REVIEWABLE_STATUSES and (row.get("review") or "") in NOT_REVIEWED


def next_row_to_review(row_at: Callable[[int], dict[str, Any] | None], start: int, count: int) -> int | None:
    """The first row from ``start`` on (in the table's order) that needs review, or None."""
    for i in range(max(0, start), count):
        row = row_at(i)
        if row is not None and needs_review(row):
            return i
    return None


def photo_call_note(detail: SpecimenDetail) -> str:
    """What the specimen's photo call rests on, in the engine's words (engine.photo_labels): the
    call's photo, or the best photo fused into a barcode call; "" when no photo was called."""
    from engine import photo_call_sentence

    s = detail.specimen
    photos = [it for it in detail.items if it["modality"] == "photo" and it["id"] in detail.calls]
    if not photos:
        return ""
    shown = next((it for it in photos if it["id"] == s.get("call_item_id")), None)
    photo = shown or max(photos, key=lambda it: (it.get("confidence") or 0.0, -it["id"]))
    return photo_call_sentence(photo.get("call_references") or "", photo.get("call_reason") or "")


def modality_disagreements(detail: SpecimenDetail) -> list[tuple[str, str, str]]:
    """(rank, DNA call, photo call) where a specimen's barcode and photo calls name different taxa.

    Compares the most confident DNA item's call with the most confident image item's call,
    rank by rank, where both named something.
    """
    best: dict[str, dict[str, tuple[str, float]]] = {}
    best_conf: dict[str, float] = {}
    for item in detail.items:
        calls = detail.calls.get(item["id"])
        if not calls:
            continue
        modality = "dna" if item["modality"] == "dna" else "image"
        conf = item.get("confidence") or 0.0
        if modality not in best or conf > best_conf[modality]:
            best[modality], best_conf[modality] = calls, conf
    if len(best) < 2:
        return []
    out = []
    for rank in CALL_RANKS:
        dna, img = best["dna"].get(rank, ("", 0))[0], best["image"].get(rank, ("", 0))[0]
        if dna and img and dna != img:
            out.append((rank, dna, img))
    return out


def given_disagreements(detail: SpecimenDetail) -> list[tuple[str, str, str]]:
    """(rank, machine call or "" if uncalled, name given in the input file) where a labelled input
    names something else than the call (only for specimens that were identified)."""
    spec = detail.specimen
    out = []
    if spec.get("status") not in ("ok", "novel"):
        return out
    for item in detail.items:
        for rank, given in (item.get("given") or {}).items():
            called = spec.get(rank) or ""
            if rank in CALL_RANKS and given and given != called:
                out.append((rank, called, given))
        if len(out) > 1:  # a BIN follows from the species: name it only when nothing else differs
            out = [d for d in out if d[0] != "bin_uri"]
        if out:
            break
    return out


def qc_summary(item: dict[str, Any]) -> str:
    """One line on a barcode item's QC, for the sequence view."""
    if item.get("sequence_length") is None:
        return item.get("error") or "no sequence"
    parts = [f"{item['sequence_length']} bp after cleaning (raw {item.get('raw_length') or '?'})"]
    amb = item.get("ambiguous_fraction")
    if amb:
        parts.append(f"{amb:.1%} ambiguous bases")
    if item.get("reverse_complemented"):
        parts.append("reverse-complemented")
    if item.get("stop_codons"):
        parts.append(f"{item['stop_codons']} stop codon(s)")
    if item.get("qc_flags"):
        parts.append("flags: " + item["qc_flags"].replace(";", ", "))
    return "; ".join(parts)
