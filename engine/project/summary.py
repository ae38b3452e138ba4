"""Which call a specimen shows, and its review state: the one rule, recomputed from its items.

``refresh_specimens`` folds a specimen's items into its row (status, counts, the chosen call, the
fused photo evidence, top match); ``refresh_review`` applies the latest accept/override.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Sequence

from engine.project.schema import CALL_RANKS, now_iso, q
from engine.records import Call, RankCall


def refresh_review(conn: sqlite3.Connection, specimen_ids: Sequence[int]) -> None:
    """Recompute ``review`` and ``final_*`` of specimens from their latest accept/override.

    review: "" (none), "accepted", "overridden", or "stale" (accepted, but a later import
    changed the machine call). final_* = the override's names if overridden, else the machine call.
    """
    ranks = ", ".join(q(r) for r in CALL_RANKS)
    for sid in specimen_ids:
        row = conn.execute(f"SELECT {ranks} FROM specimens WHERE id = ?", [sid]).fetchone()
        if row is None:
            continue
        machine = [v or "" for v in row]
        last = conn.execute(
            f"SELECT action, {ranks}, machine_call FROM annotations WHERE specimen_id = ? "
            f"AND action IN ('accept', 'override') ORDER BY id DESC LIMIT 1", [sid]).fetchone()
        final, review = machine, ""
        if last is not None and last[0] == "override":
            final, review = [v or "" for v in last[1:-1]], "overridden"
        elif last is not None:
            accepted = json.loads(last[-1])
            review = "accepted" if [accepted.get(r, "") for r in CALL_RANKS] == machine else "stale"
        conn.execute(f"UPDATE specimens SET review = ?, {', '.join(f'final_{r} = ?' for r in CALL_RANKS)} "
                     f"WHERE id = ?", [review, *final, sid])



_CALL_ITEM_ORDER = ("CASE i.modality WHEN 'dna' THEN 0 ELSE 1 END, COALESCE(i.confidence, 0) DESC, i.id")


def _item_call(conn: sqlite3.Connection, item_id: int) -> Call:
    row = conn.execute("SELECT novel, novel_rank FROM items WHERE id = ?", [item_id]).fetchone()
    ranks = {r: RankCall(r, "", 0.0) for r in CALL_RANKS}
    for rank, name, conf in conn.execute("SELECT rank, name, confidence FROM calls WHERE item_id = ?", [item_id]):
        ranks[rank] = RankCall(rank, name or "", float(conf or 0.0))
    return Call(ranks, novel=bool(row[0]), novel_rank=row[1] or "")


def fused_photo_item(conn: sqlite3.Connection, sid: int) -> int | None:
    """The item id of the specimen's best identified photo: the one a barcode call is fused with."""
    photo = conn.execute(
        "SELECT i.id FROM items i WHERE i.specimen_id = ? AND i.modality = 'photo' AND i.status IN ('ok', 'novel') "
        "AND EXISTS (SELECT 1 FROM calls c WHERE c.item_id = i.id) ORDER BY COALESCE(i.confidence, 0) DESC, i.id "
        "LIMIT 1", [sid]).fetchone()
    return None if photo is None else photo[0]


def _fuse_with_photo(conn: sqlite3.Connection, sid: int, dna_item: int, values: dict[str, Any]) -> None:
    """Fold the specimen's best identified photo into its barcode call (see refresh_specimens)."""
    from engine.fuse import fuse

    if values["call_modality"] != "dna":
        return
    photo = fused_photo_item(conn, sid)
    if photo is None:
        return
    fused = fuse((_item_call(conn, dna_item), []), (_item_call(conn, photo), []))
    for rank in CALL_RANKS:
        values[f"{rank}_confidence"] = fused.call.confidence(rank)
    finest = fused.call.shown_rank
    values["confidence"] = fused.call.confidence(finest) if finest else values["confidence"]
    values["call_modality"] = "dna+image"
    values["disagreement_rank"] = fused.disagreement_rank


CONFLICT_RANKS = ("order", "family", "genus")  # barcodes of one specimen naming different species are common
# (a BIN shared by sister species, a call left at genus); different genera or above mean a mix-up


def _conflict_rank(conn: sqlite3.Connection, sid: int) -> str:
    """The coarsest rank at which two barcodes of one specimen (the same id in two files, or two
    records) name different taxa, each by its machine call or, where it has none, the taxonomy
    its file gave; "" when they agree."""
    names: dict[str, set[str]] = {r: set() for r in CONFLICT_RANKS}
    for item_id, given in conn.execute("SELECT id, given FROM items WHERE specimen_id = ? AND modality = 'dna' "
                                       "AND status IN ('ok', 'novel')", [sid]):
        called = dict(conn.execute("SELECT rank, name FROM calls WHERE item_id = ?", [item_id]).fetchall())
        stated = json.loads(given) if given else {}
        for rank in CONFLICT_RANKS:
            name = called.get(rank) or stated.get(rank) or ""
            if name:
                names[rank].add(name)
    return next((r for r in CONFLICT_RANKS if len(names[r]) > 1), "")


def refresh_specimens(conn: sqlite3.Connection, specimen_ids, run_id: int | None = None) -> None:
    """Recompute each specimen's summary from its items: status, counts, the chosen call, top match.

    The call shown for a specimen is its best identified item's: DNA before photos (a barcode
    is far more specific than a photo), then the most confident, then the first imported. When
    the specimen has an identified photo too, the barcode's call is fused with the best photo's
    (engine.fuse: the barcode's names, confidences raised where the photo agrees and lowered
    where it disagrees) and ``disagreement_rank`` says where they first name different taxa.
    """
    stamp = now_iso()
    for sid in specimen_ids:
        items = conn.execute("SELECT modality, status, error FROM items WHERE specimen_id = ? ORDER BY id",
                             [sid]).fetchall()
        if not items:
            if conn.execute("SELECT 1 FROM annotations WHERE specimen_id = ? LIMIT 1", [sid]).fetchone() is None:
                conn.execute("DELETE FROM specimens WHERE id = ?", [sid])
                continue
        n_photos = sum(m == "photo" for m, _, _ in items)
        n_barcodes = sum(m == "dna" for m, _, _ in items)
        errors = [e for _, s, e in items if s == "error"]
        modalities = "+".join(m for m in ("dna", "photo") if any(x == m for x, _, _ in items))
        best = conn.execute(
            f"SELECT i.id, i.status, i.novel, i.novel_rank, i.confidence FROM items i WHERE i.specimen_id = ? "
            f"AND i.status IN ('ok', 'novel') AND EXISTS (SELECT 1 FROM calls c WHERE c.item_id = i.id) "
            f"ORDER BY {_CALL_ITEM_ORDER} LIMIT 1", [sid]).fetchone()
        if best is not None:
            status = best[1]
        elif any(s == "pending" for _, s, _ in items):
            status = "pending"
        elif any(s in ("ok", "novel") for _, s, _ in items):
            status = "pending"
        else:
            status = "error" if items else "pending"
        dna = conn.execute(
            "SELECT qc_flags, sequence_length FROM items i WHERE specimen_id = ? AND modality = 'dna' "
            f"ORDER BY (i.status = 'error'), {_CALL_ITEM_ORDER} LIMIT 1", [sid]).fetchone()
        values: dict[str, Any] = {
            "status": status, "modalities": modalities, "n_photos": n_photos, "n_barcodes": n_barcodes,
            "n_errors": len(errors), "error": errors[0] if errors else "",
            "qc_flags": dna[0] if dna else "", "sequence_length": dna[1] if dna else None,
            "updated_at": stamp,
            "call_item_id": None, "call_modality": "", "novel": None, "novel_rank": "", "confidence": None,
            **{r: "" for r in CALL_RANKS}, **{f"{r}_confidence": None for r in CALL_RANKS},
            "top_match_id": "", "top_match_species": "", "top_similarity": None, "identity": None,
            "disagreement_rank": "", "conflict_rank": _conflict_rank(conn, sid) if n_barcodes > 1 else "",
        }
        if run_id is not None:
            values["run_id"] = run_id
        if best is not None:
            item_id = best[0]
            values.update(call_item_id=item_id, novel=best[2], novel_rank=best[3] or "", confidence=best[4])
            for rank, name, conf, modality in conn.execute(
                    "SELECT rank, name, confidence, modality FROM calls WHERE item_id = ?", [item_id]):
                values[rank], values[f"{rank}_confidence"], values["call_modality"] = name, conf, modality
            _fuse_with_photo(conn, sid, item_id, values)
            top = conn.execute("SELECT record_id, species, similarity, identity FROM matches WHERE item_id = ? "
                               "AND position = 0", [item_id]).fetchone()
            if top is not None:
                values.update(top_match_id=top[0], top_match_species=top[1], top_similarity=top[2],
                              identity=top[3])
        conn.execute(f"UPDATE specimens SET {', '.join(f'{q(k)} = ?' for k in values)} WHERE id = ?",
                     [*values.values(), sid])
    refresh_review(conn, list(specimen_ids))
