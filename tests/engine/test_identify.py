"""The DNA identification path end to end on a tiny real model and a synthetic library."""
import numpy as np
import pytest

from engine.errors import LibraryError, ModelPackError
from engine.identify import DnaIdentifier, open_identifier
from engine.library import ReferenceLibrary
from engine.models.dna_encoder import DnaEncoder
from engine.models.pack import load_pack
from engine.records import RecordError


@pytest.fixture(scope="module")
def identifier(tiny_library, tiny_dna_pack):
    return open_identifier(tiny_library, tiny_dna_pack, device="cpu")


def test_known_species_are_called_to_species(identifier, synthetic_split):
    _, known, _ = synthetic_split
    results = identifier.identify(known)
    assert [r.status for r in results] == ["ok"] * len(known)
    assert [r.call.name("species") for r in results] == [k.taxonomy.species for k in known]
    assert all(r.matches[0].identity > 0.97 for r in results)


def test_novel_species_are_flagged_but_keep_their_genus(identifier, synthetic_split):
    _, _, novel = synthetic_split
    results = identifier.identify(novel)
    assert all(r.status == "novel" and r.call.novel_rank == "species" for r in results)
    assert all(r.call.name("species") == "" for r in results)
    assert [r.call.name("genus") for r in results] == [n.taxonomy.genus for n in novel]


def test_bad_records_become_error_rows_in_order(identifier, synthetic_split):
    good = synthetic_split[1][0]
    recs = [RecordError("broken", "f.fa", "malformed FASTA: x"), good]
    bad_seq = type(good)("prot", "MKVLEEFQ" * 30, "f.fa")
    results = identifier.identify(recs + [bad_seq])
    assert [r.status for r in results] == ["error", "ok", "error"]
    assert results[0].error == "malformed FASTA: x"
    assert "not a DNA sequence" in results[2].error
    row = results[2].as_row()
    assert row["status"] == "error" and row["species"] == ""


def test_embedding_only_mode_still_separates_genera(tiny_library, tiny_dna_pack, synthetic_split):
    ident = open_identifier(tiny_library, tiny_dna_pack, device="cpu", use_sequences=False)
    assert not ident.use_identity
    _, known, novel = synthetic_split
    results = ident.identify(known + novel)
    genus_ok = np.mean([r.call.name("genus") in ("", q.taxonomy.genus) for r, q in zip(results, known + novel)])
    assert genus_ok == 1.0  # never a wrong genus
    assert all(r.matches[0].identity is None for r in results)


def test_library_refuses_another_model(tiny_library, tiny_dna_pack, tmp_path):
    pack = load_pack(tiny_dna_pack)
    fp32 = DnaEncoder(pack, precision="fp32", device="cpu")
    with pytest.raises(LibraryError, match="cannot be compared"):
        DnaIdentifier(ReferenceLibrary.open(tiny_library), fp32)


def test_corrupt_model_pack_is_refused(tiny_dna_pack, tmp_path):
    import shutil

    copy = tmp_path / "pack"
    shutil.copytree(tiny_dna_pack, copy)
    with open(copy / "model.int8.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x00\x00\x00")
    with pytest.raises(ModelPackError, match="corrupt or was changed"):
        load_pack(copy)


def test_calibration_is_measured_on_the_library(tiny_library):
    from engine.assign import MAX_FALSE_NOVEL, TEMPERATURES

    cal = ReferenceLibrary.open(tiny_library).calibration
    for kind in ("identity", "similarity"):
        c = cal[kind]
        # the synthetic species differ by a few percent: the species cut lies between them
        assert 0.85 < c["threshold"]["species"] < 1.0
        assert c["rates"]["species"]["false_novel"] <= MAX_FALSE_NOVEL
        assert c["rates"]["species"]["missed_novel"] <= 0.05
        assert c["temperature"] in TEMPERATURES[kind]
        a, b, d = c["logistic"]["species"]
        assert b > 0  # a closer top match makes a species call more likely right
    novelty, top_only = cal["similarity"]["novelty"], cal["similarity"]["rates"]["species"]
    assert novelty["false_novel"] <= MAX_FALSE_NOVEL
    # never worse than the top score alone on the library's own simulated queries
    assert novelty["false_novel"] + novelty["missed_novel"] <= top_only["false_novel"] + top_only["missed_novel"]
    assert "novelty" not in cal["identity"]


def test_novelty_uses_the_species_gap_where_it_separates_present_from_absent():
    from engine.assign import MAX_FALSE_NOVEL, Candidates, _fit_novelty, best_threshold, species_gap
    from engine.records import Taxonomy

    rng = np.random.default_rng(0)
    a, b = Taxonomy(genus="G", species="G a"), Taxonomy(genus="G", species="G b")

    def cands(top, gap):
        return Candidates([a, b], np.array([top, top - gap]), "similarity")

    # top scores overlap; a present species stands out from the next species, an absent one does not
    present = [cands(t, g) for t, g in zip(rng.uniform(0.88, 0.99, 1500), rng.uniform(0.02, 0.08, 1500))]
    absent = [cands(t, g) for t, g in zip(rng.uniform(0.85, 0.95, 1500), rng.uniform(0.0, 0.03, 1500))]
    novelty = _fit_novelty(present, absent, MAX_FALSE_NOVEL)
    _, fn_top, mn_top = best_threshold(np.array([c.scores[0] for c in present]),
                                       np.array([c.scores[0] for c in absent]), MAX_FALSE_NOVEL)
    assert novelty["weights"][1] > 0.1  # the gap is used
    assert novelty["false_novel"] <= MAX_FALSE_NOVEL
    assert novelty["missed_novel"] < mn_top / 2  # and halves the novel queries missed
    w = novelty["weights"]
    assert np.mean([w[0] * c.scores[0] + w[1] * species_gap(c) < novelty["threshold"] for c in absent]) \
        == pytest.approx(1 - novelty["missed_novel"])


def test_species_gap_is_measured_to_the_best_other_species():
    from engine.assign import Candidates, species_gap
    from engine.records import Taxonomy

    a, b = Taxonomy(genus="G", species="G a"), Taxonomy(genus="G", species="G b")
    assert species_gap(Candidates([a, a, b, b], np.array([0.99, 0.98, 0.93, 0.90]), "similarity")) == pytest.approx(0.06)
    # no other species among the candidates: the gap is at least the spread of the candidates
    assert species_gap(Candidates([a, a, a], np.array([0.99, 0.98, 0.95]), "similarity")) == pytest.approx(0.04)


def test_novelty_threshold_respects_the_false_flag_cap():
    from engine.assign import best_threshold

    rng = np.random.default_rng(0)
    present = rng.normal(0.99, 0.01, 2000)
    absent = rng.normal(0.95, 0.02, 2000)
    t_free, fn_free, _ = best_threshold(present, absent)
    t_capped, fn_capped, missed = best_threshold(present, absent, max_false_novel=0.01)
    assert fn_free > 0.01  # the balanced optimum flags more present queries than the cap allows
    assert t_capped < t_free and fn_capped <= 0.01
    assert np.mean(present < t_capped) <= 0.01
    assert abs(missed - np.mean(absent >= t_capped)) < 1e-9


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_genus_prototypes_leave_a_species_out_exactly():
    from engine.assign import GenusPrototypes
    from engine.records import Taxonomy

    rng = np.random.default_rng(1)
    tax = [Taxonomy(order="O", family="F", genus=f"G{s % 3}", species=f"G{s % 3} sp{s}") for s in range(9) for _ in range(4)]
    m = _unit(rng.normal(size=(len(tax), 16)))
    q = _unit(rng.normal(size=16))
    full = GenusPrototypes(m, tax)
    keep = [i for i, t in enumerate(tax) if t.species != "G1 sp4"]
    without = GenusPrototypes(m[keep], [tax[i] for i in keep])
    record = next(i for i, t in enumerate(tax) if t.species == "G1 sp4")
    left_out = full.scores_leaving_out(q, record, m[record], True, ["G0", "G1", "G2"])
    assert left_out == pytest.approx(without.scores(q[None], [["G0", "G1", "G2"]])[0], abs=1e-5)
    # only the record itself out: its species stays, the record's vector does not
    keep = [i for i in range(len(tax)) if i != record]
    without_record = GenusPrototypes(m[keep], [tax[i] for i in keep])
    assert full.scores_leaving_out(q, record, m[record], False, ["G1"]) == pytest.approx(
        without_record.scores(q[None], [["G1"]])[0], abs=1e-5)


def test_genus_call_follows_the_nearest_prototype_not_the_nearest_records():
    from engine.assign import Candidates, vote
    from engine.records import Taxonomy

    a = [Taxonomy(order="O", family="F", genus="Alpha", species=f"Alpha sp{i}") for i in range(3)]
    b = [Taxonomy(order="O", family="F", genus="Beta", species="Beta sp0")]
    scores = np.array([0.90, 0.89, 0.88, 0.87])
    by_records = vote(Candidates(a + b, scores, "similarity"), 0.02)
    by_prototype = vote(Candidates(a + b, scores, "similarity", {"Alpha": 0.70, "Beta": 0.80}), 0.02)
    assert by_records["genus"][0] == "Alpha"
    assert by_prototype["genus"][0] == "Beta"
    assert by_prototype["genus"][1] > 0.9  # 0.1 of cosine at temperature 0.02: a clear winner
    assert by_prototype["species"][0] == "Beta sp0"  # the species vote stays within the called genus


def test_no_reading_frame_and_no_close_reference_is_not_identified(identifier, synthetic_split):
    good = synthetic_split[1][0]
    # random AT-rich bases: no reading frame, and nothing in the library near it
    rng = np.random.default_rng(4)
    noise = type(good)("noise", "".join(rng.choice(list("ATCG"), p=[0.3, 0.4, 0.15, 0.15], size=658)), "f.fa")
    results = identifier.identify([noise, good])
    assert "no_reading_frame" in results[0].qc.flags
    assert results[0].status == "error" and results[0].error.startswith("no reading frame")
    assert results[0].call is None and results[0].as_row()["family"] == ""
    assert results[1].status == "ok"


def test_a_frame_shifted_barcode_with_a_close_reference_is_kept():
    from engine.identify import unframed_error
    from engine.records import BarcodeQC, Call, RankCall

    qc = BarcodeQC("ACGT" * 150, 600, 600, 0.0, False, 9, ["stop_codons", "no_reading_frame"])
    close = Call({r: RankCall(r, "x", 0.9) for r in ("order", "family", "genus", "species", "bin_uri")})
    far = Call({r: RankCall(r, "", 0.1) for r in ("order", "family", "genus", "species", "bin_uri")},
               novel=True, novel_rank="order")
    assert unframed_error(qc, close) == ""
    assert unframed_error(qc, far).startswith("no reading frame (9 stop codons")
    framed = BarcodeQC("ACGT" * 150, 600, 600, 0.0, False, 2, ["stop_codons"])
    assert unframed_error(framed, far) == ""


def test_after_the_first_candidates_only_what_the_call_needs_is_aligned():
    from engine.kmer_index import CLEAR_GAP, CLEAR_IDENTITY, WIDEN_BELOW, after_first

    same = ["A a"] * 4
    rest = ["A a", "B b", "B b", "C c", "D d"]
    # settled: high and alone; only the nearest record of two more species, for the evidence
    assert after_first([CLEAR_IDENTITY, 0.98, 0.97, 0.96], same, rest) == [1, 3]
    assert after_first([0.999, 0.999 - CLEAR_GAP, 0.9, 0.9], ["A a", "B b", "B b", "C c"], rest) == []
    # another species close to the top, or the top not high enough: every remaining candidate
    other_close = ["A a", "B b", "A a", "A a"]
    assert after_first([0.999, 0.999 - CLEAR_GAP / 2, 0.9, 0.9], other_close, rest) == list(range(5))
    assert after_first([CLEAR_IDENTITY - 0.001, 0.9, 0.9, 0.9], same, rest) == list(range(5))
    # nothing close: to the k-mer search instead
    assert after_first([WIDEN_BELOW - 0.001, 0.9, 0.9, 0.9], same, rest) is None
    # an unnamed reference counts as another species
    assert after_first([0.999, 0.995, 0.9, 0.9], ["A a", "", "A a", "A a"], rest) == list(range(5))


def test_clear_queries_align_a_fifth_of_their_candidates_and_get_the_same_calls(tiny_dna_pack, tmp_path, monkeypatch):
    import engine.identify
    import engine.kmer_index
    from engine.build import add_barcodes, calibrate_library
    from tests.synthetic import make_barcodes

    recs = make_barcodes(genera=4, species_per_genus=4, records_per_species=6, record_divergence=0.002, seed=3)
    queries = [r for r in recs if r.specimen_id.endswith("-0")]
    lib = ReferenceLibrary.create(tmp_path / "lib.db")
    add_barcodes(lib, [r for r in recs if r not in queries], DnaEncoder.from_path(tiny_dna_pack))
    calibrate_library(lib)
    lib.close()
    ident = open_identifier(tmp_path / "lib.db", tiny_dna_pack, device="cpu")
    aligned = []
    real = engine.identify.pair_identities
    monkeypatch.setattr(engine.identify, "pair_identities", lambda pairs, **kw: aligned.append(len(pairs)) or real(pairs, **kw))
    early = ident.identify(queries)
    assert sum(aligned) <= len(queries) * (engine.kmer_index.FIRST_ALIGNED + 2) < len(queries) * ident.k / 4
    monkeypatch.setattr(engine.kmer_index, "FIRST_ALIGNED", ident.k)  # every embedding candidate aligned
    aligned.clear()
    full = ident.identify(queries)
    assert sum(aligned) == len(queries) * ident.k
    assert [r.call.name("species") for r in early] == [r.call.name("species") for r in full] == \
        [q.taxonomy.species for q in queries]
    assert [r.matches[0].identity for r in early] == [r.matches[0].identity for r in full]
    # the evidence still names three species
    assert all(len({m.taxonomy.species for m in r.matches}) >= 3 for r in early)
