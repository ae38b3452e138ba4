"""What the photo model does not know: domain scores and thresholds, photo calls cut to the ranks
their domain supports, never novel from a photo, fused calls unchanged by an out-of-domain photo,
and the image split that keeps benchmark photos out of training and references."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.identify_image import (OUTSIDE_DOMAIN, PhotoCall, _photo_call, domain_prototypes, domain_ranks,
                                   domain_score, fit_domain, pack_matrix, unpack_matrix)
from engine.io.images import LabelledPhoto
from engine.records import RANKS, Call, Match, RankCall, Taxonomy

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _cluster(center: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    return _unit(center + spread * rng.standard_normal((n, DIM)))


@pytest.fixture
def two_orders():
    """Photos of two orders (two families each), as embeddings around four directions."""
    rng = np.random.default_rng(0)
    axes = np.eye(DIM)
    emb, tax = [], []
    for k, (order, family) in enumerate([("Hymenoptera", "Formicidae"), ("Hymenoptera", "Apidae"),
                                         ("Lepidoptera", "Nymphalidae"), ("Lepidoptera", "Pieridae")]):
        emb.append(_cluster(axes[k], 40, 0.15, rng))
        tax += [Taxonomy(order=order, family=family)] * 40
    return np.concatenate(emb), tax, rng


def test_domain_prototypes_are_taxon_centroids_of_enough_photos(two_orders):
    emb, tax, _ = two_orders
    lone = Taxonomy(order="Odonata", family="Aeshnidae")
    protos, orders = domain_prototypes(np.vstack([emb, emb[:1]]), tax + [lone])
    # 4 families + 2 orders; the single Odonata photo is no region of its own
    assert len(protos) == 6 and sorted(set(orders)) == ["Hymenoptera", "Lepidoptera"]
    assert np.allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)
    assert domain_score(emb[:3], protos).min() > 0.8


def test_an_order_left_out_is_simulated_and_photos_far_from_every_taxon_get_no_call(two_orders):
    emb, tax, rng = two_orders
    protos, orders = domain_prototypes(emb[::2], tax[::2])
    domain = fit_domain(emb[1::2], [t.order for t in tax[1::2]], protos, orders)
    t = domain["threshold"]
    assert domain["fit"]["order_absent_simulated"] == len(emb[1::2])
    assert domain["fit"]["false_outside"] <= 0.02 and domain["fit"]["order_absent_above_threshold"] == 0.0
    inside = domain_score(emb[1::2], protos)
    assert (inside >= t["order"]).mean() >= 0.98
    # photos of a fifth, unseen direction: outside, no rank at all
    outside = _cluster(np.eye(DIM)[7], 20, 0.15, rng)
    assert all(domain_ranks(s, domain) == () for s in domain_score(outside, protos))
    assert domain_ranks(float(inside.max()), domain) == ("order", "family", "genus", "species")
    between = (t["order"] + t["family"]) / 2
    if t["family"] > t["order"]:
        assert domain_ranks(between, domain) == ("order",)


def test_a_model_that_saw_one_order_never_calls_an_order(two_orders):
    emb, tax, _ = two_orders
    ants = emb[:80]
    protos, orders = domain_prototypes(ants[::2], tax[:80:2])
    domain = fit_domain(ants[1::2], ["Hymenoptera"] * 40, protos, orders)
    assert domain["fit"]["orders"] == ["Hymenoptera"]
    assert domain_ranks(1.0, domain) == ()  # not even a perfect match: it cannot tell Hymenoptera from others


def _call(**names_conf) -> Call:
    return Call({r: RankCall(r, *names_conf.get(r, ("", 0.0))) for r in RANKS}, novel=True, novel_rank="species")


def test_photo_calls_keep_the_ranks_the_domain_supports_say_why_and_are_never_novel():
    domain = {"threshold": {"order": 0.5, "family": 0.7}}
    raw = _call(order=("Lepidoptera", 0.99), family=("Pieridae", 0.9), genus=("Pieris", 0.8))
    full = _photo_call(raw, ("order", "family", "genus", "species"), 0.9, domain, "image")
    assert isinstance(full, PhotoCall) and full.name("genus") == "Pieris" and full.reason == ""
    assert not full.novel and full.novel_rank == ""
    coarse = _photo_call(raw, ("order", "family", "genus", "species"), 0.6, domain, "image")
    assert coarse.name("order") == "Lepidoptera" and coarse.name("family") == "" and coarse.reason == OUTSIDE_DOMAIN
    outside = _photo_call(raw, ("order", "family"), 0.2, domain, "dna")
    assert not any(outside.name(r) for r in RANKS) and outside.reason == OUTSIDE_DOMAIN
    assert outside.references == "dna" and outside.domain_score == pytest.approx(0.2)


def test_a_photo_outside_the_domain_leaves_the_barcode_call_as_it_is():
    from engine.fuse import fuse

    dna = _call(order=("Diptera", 0.97), family=("Cecidomyiidae", 0.8))
    dna = Call(dna.ranks)
    matches = [Match("r1", Taxonomy(order="Diptera", family="Cecidomyiidae"), 0.9)]
    photo = _photo_call(_call(order=("Hymenoptera", 0.99), family=("Formicidae", 0.95)), ("order", "family"),
                        0.1, {"threshold": {"order": 0.5}}, "dna")
    fused = fuse((dna, matches), (photo, []))
    assert not fused.disagreement
    assert {r: (fused.call.name(r), fused.call.confidence(r)) for r in RANKS} == \
        {r: (dna.name(r), dna.confidence(r)) for r in RANKS}
    # the same photo inside the domain does lower the barcode's order confidence (a disagreement)
    inside = _photo_call(_call(order=("Hymenoptera", 0.99)), ("order", "family"), 0.9, {"threshold": {"order": 0.5}})
    assert fuse((dna, matches), (inside, [])).call.confidence("order") < 0.97


def test_domain_prototypes_round_trip_through_a_manifest():
    m = _unit(np.random.default_rng(1).standard_normal((5, DIM)))
    back = unpack_matrix(pack_matrix(m))
    assert back.shape == m.shape and np.abs(back - m).max() < 1e-3


def test_the_split_holds_out_the_sources_own_validation_photos_and_a_stable_share_of_each_class(tmp_path):
    from engine.train.image import MIN_CLASS_PHOTOS, split_photos

    def photo(name: str, species: str, order: str = "Lepidoptera") -> LabelledPhoto:
        return LabelledPhoto(Path(tmp_path / species / name), Path(name).stem,
                             Taxonomy(order=order, family="Pieridae", species=species), "")

    marked = [photo(f"val_{i}.jpg", "Pieris rapae") for i in range(3)] + \
        [photo(f"train_{i}.jpg", "Pieris rapae") for i in range(30)]
    hashed = [photo(f"{i:03d}.jpg", "Pieris napi") for i in range(200)]
    lone = [photo("one.jpg", "Aeshna cyanea", "Odonata")]
    train, calib, held = split_photos(marked + hashed + lone)
    held_names = {p.path.name for p in held}
    assert {f"val_{i}.jpg" for i in range(3)} <= held_names
    assert not any(n.startswith("train_") for n in held_names)  # the source said train: never held out
    assert 15 <= sum(p.taxonomy.species == "Pieris napi" for p in held) <= 50
    assert lone[0] in train and MIN_CLASS_PHOTOS > 1
    assert split_photos(list(reversed(marked + hashed + lone)))[2] == list(reversed(held))  # by name, not order
    assert not set(map(id, held)) & set(map(id, train + calib))
