"""The words a photo call is explained in: why ranks were left uncalled, what it was matched against.

One vocabulary for every output: the `bioscan identify` CSV and the project CSV (``call_reason``,
``matched_against``), the project database (``items.call_reason``, ``items.call_references``)
and the desktop app's specimen detail. Kept apart from engine.identify_image so the GUI can
word a stored call without importing the matching code.
"""
from __future__ import annotations

OUTSIDE_DOMAIN = "outside the photos this model was trained on and the library's photo references"

# PhotoCall.references ("image" | "dna", as stored in items.call_references) -> matched_against
MATCHED_AGAINST = {"image": "photo references", "dna": "DNA references (fallback)"}
# why a photo was matched against the DNA references: what the fallback means for the user
DNA_FALLBACK_WHY = "no photo references for this taxon"

PHOTO_CALL_COLUMNS = ("call_reason", "matched_against")

# learning from barcoded specimens (engine.identify_image.learn_barcoded_photos): a barcode call names
# its specimen's photos down to the finest rank it reaches this confidence at; the CLI's and the
# GUI's default, here so that neither has to import the matching code to show it
BARCODED_MIN_CONFIDENCE = 0.9


def matched_against(references: str) -> str:
    """The ``matched_against`` words of a photo call's reference modality ("" for none or a barcode)."""
    return MATCHED_AGAINST.get(references or "", "")


def photo_call_cells(references: str, reason: str) -> dict[str, str]:
    """The PHOTO_CALL_COLUMNS of a photo call (both "" for a barcode's call)."""
    return {"call_reason": reason or "", "matched_against": matched_against(references)}


def photo_call_sentence(references: str, reason: str) -> str:
    """What a photo call was matched against and why ranks were left uncalled, in plain words:
    "Photo matched against DNA references (no photo references for this taxon); no finer call:
    outside the photos ..."; "" when there is nothing to say."""
    parts = []
    if references == "dna":
        parts.append(f"Photo matched against DNA references ({DNA_FALLBACK_WHY})")
    elif references in MATCHED_AGAINST:
        parts.append(f"Photo matched against {MATCHED_AGAINST[references]}")
    if reason:
        parts.append(f"ranks left uncalled: {reason}" if parts else f"Photo ranks left uncalled: {reason}")
    return "; ".join(parts) + ("." if parts else "")
