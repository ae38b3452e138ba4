"""Fusion of a barcode's and a photo's calls for the same specimen."""
from __future__ import annotations

import pytest

from engine.fuse import fuse
from engine.records import RANKS, Call, Match, RankCall, Taxonomy


def make_call(names: dict[str, tuple[str, float]], novel_rank: str = "") -> Call:
    return Call({r: RankCall(r, *names.get(r, ("", 0.0))) for r in RANKS}, novel=bool(novel_rank),
                novel_rank=novel_rank)


DNA_MATCH = [Match("REF1", Taxonomy("Hymenoptera", "Formicidae", "", "Lasius", "Lasius niger"), 0.97, 0.99)]
IMG_MATCH = [Match("IMG1", Taxonomy("Hymenoptera", "Formicidae"), 0.61)]


def test_agreement_raises_confidence_as_noisy_or():
    dna = make_call({"order": ("Hymenoptera", 0.9), "family": ("Formicidae", 0.8), "genus": ("Lasius", 0.7)})
    img = make_call({"order": ("Hymenoptera", 0.6), "family": ("Formicidae", 0.5)})
    f = fuse((dna, DNA_MATCH), (img, IMG_MATCH))
    assert not f.disagreement and f.flags == []
    assert f.call.confidence("family") == pytest.approx(1 - 0.2 * 0.5)
    assert f.call.confidence("order") == pytest.approx(1 - 0.1 * 0.4)
    assert f.call.name("genus") == "Lasius" and f.call.confidence("genus") == pytest.approx(0.7)
    assert f.sources == {"order": "dna+image", "family": "dna+image", "genus": "dna"}
    assert f.matches == DNA_MATCH


def test_disagreement_keeps_the_barcode_name_lowers_confidence_and_flags_the_coarsest_rank():
    dna = make_call({"order": ("Hymenoptera", 0.95), "family": ("Formicidae", 0.9), "genus": ("Lasius", 0.8)})
    img = make_call({"order": ("Diptera", 0.7), "family": ("Muscidae", 0.6)})
    f = fuse((dna, DNA_MATCH), (img, IMG_MATCH))
    assert f.disagreement and f.disagreement_rank == "order"
    assert f.flags == ["photo_disagrees_at_order"]
    assert f.call.name("order") == "Hymenoptera" and f.call.name("family") == "Formicidae"
    expected = 0.95 * 0.3 / (0.95 * 0.3 + 0.05 * 0.7)
    assert f.call.confidence("order") == pytest.approx(expected)
    assert f.call.confidence("order") < 0.95


def test_photo_never_adds_a_name_the_barcode_left_open():
    split_vote = make_call({"order": ("Hymenoptera", 0.9)})  # family vote too split to call
    img = make_call({"order": ("Hymenoptera", 0.8), "family": ("Formicidae", 0.95)})
    f = fuse((split_vote, DNA_MATCH), (img, IMG_MATCH))
    assert f.call.name("family") == "" and "family" not in f.sources
    novel = make_call({"order": ("Hymenoptera", 0.9)}, novel_rank="family")
    f = fuse((novel, DNA_MATCH), (img, IMG_MATCH))
    assert f.call.name("family") == "" and f.call.novel_rank == "family"


def test_photo_family_is_not_added_under_a_different_order():
    dna = make_call({"order": ("Diptera", 0.9)})
    img = make_call({"order": ("Hymenoptera", 0.8), "family": ("Formicidae", 0.8)})
    f = fuse((dna, DNA_MATCH), (img, IMG_MATCH))
    assert f.disagreement_rank == "order"
    assert f.call.name("order") == "Diptera" and f.call.name("family") == ""


def test_one_modality_alone_passes_through():
    dna = make_call({"order": ("Hymenoptera", 0.9)})
    img = make_call({"order": ("Diptera", 0.8)})
    assert fuse((dna, DNA_MATCH), None).call is dna
    only_photo = fuse(None, (img, IMG_MATCH))
    assert only_photo.call is img and only_photo.matches == IMG_MATCH and only_photo.sources == {"order": "image"}
    with pytest.raises(ValueError):
        fuse(None, None)


def test_fused_names_are_the_barcode_names():
    import itertools

    names = [("", 0.0), ("Hymenoptera", 0.9), ("Diptera", 0.6)]
    for (do, io_) in itertools.product(names, names):
        dna = make_call({"order": do})
        img = make_call({"order": io_})
        f = fuse((dna, DNA_MATCH), (img, IMG_MATCH))
        assert f.call.name("order") == do[0]
