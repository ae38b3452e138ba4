"""The evidence behind a call, as BOLD shows it: top identity, and the closest reference of each
of the best three species with its identity and overlap, in identify's CSV, the project and its export."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from engine.align import alignment, identity
from engine.identify import EVIDENCE_COLUMNS, RESULT_COLUMNS, _kept_positions, species_evidence
from engine.records import REPORTED_MATCHES, Barcode, Call, Match, RankCall, Taxonomy


@pytest.fixture(scope="module")
def identifier(tiny_library, tiny_dna_pack):
    from engine.identify import open_identifier

    return open_identifier(tiny_library, tiny_dna_pack, device="cpu")


def test_overlap_is_the_stretch_the_shorter_sequence_aligns_to():
    rng = np.random.default_rng(0)
    ref = "".join(rng.choice(list("ACGT"), 658))
    assert alignment(ref, ref) == (1.0, 658)
    fragment = ref[200:500]
    assert alignment(fragment, ref) == (1.0, 300) == alignment(ref, fragment)
    mutated = fragment[:100] + ("A" if fragment[100] != "A" else "C") + fragment[101:]
    ident, overlap = alignment(mutated, ref)
    assert ident == identity(mutated, ref) == pytest.approx(1 - 1 / 300) and overlap == 300
    with_insertion = fragment[:150] + "GGG" + fragment[150:]  # 303 bp over 300 of the reference
    assert alignment(with_insertion, ref)[1] == 300
    assert alignment("", ref) == (0.0, 0)


def test_kept_matches_hold_the_closest_reference_of_each_of_the_best_three_species():
    a, b, c, d = (Taxonomy(genus="G", species=f"G s{n}") for n in range(4))
    unnamed = Taxonomy(genus="G")
    ranked = [a] * 12 + [unnamed, b, a, c, d]
    kept = _kept_positions(ranked, REPORTED_MATCHES)
    assert len(kept) == REPORTED_MATCHES and kept == sorted(kept)
    assert {13, 15} <= set(kept) and 16 not in kept and 12 not in kept  # b and c; not a 4th species nor unnamed
    assert _kept_positions([a, b], REPORTED_MATCHES) == [0, 1]
    matches = [Match(f"R{p}", ranked[p], 0.9, 1 - p / 100) for p in kept]
    assert [m.record_id for m in species_evidence(matches)] == ["R0", "R13", "R15"]


def test_identify_rows_show_identity_and_overlap_of_the_best_three_species(identifier, synthetic_split):
    library, known, novel = synthetic_split
    by_id = {r.specimen_id: r for r in library}
    partial = Barcode("PARTIAL", known[0].sequence[150:450], "q.fasta")  # a 300-bp fragment
    results = identifier.identify(known + novel + [partial])
    rows = [r.as_row() for r in results]
    assert set(EVIDENCE_COLUMNS) <= set(RESULT_COLUMNS) and list(rows[0]) == RESULT_COLUMNS
    for res, row in zip(results, rows):
        assert row["top_identity"] == pytest.approx(100 * row["identity"], abs=0.006)
        species = [row[f"species_{n}"] for n in (1, 2, 3)]
        assert species[0] == row["top_match_species"] and len(set(species)) == 3  # the library has 12 species
        idents = [row[f"identity_{n}"] for n in (1, 2, 3)]
        assert idents == sorted(idents, reverse=True) and idents[0] == row["top_identity"]
        query = res.qc.sequence
        for n in (1, 2, 3):
            ref = by_id[row[f"ref_{n}"]]
            assert ref.taxonomy.species == row[f"species_{n}"]
            ident, overlap = alignment(query, ref.sequence)
            assert row[f"identity_{n}"] == round(100 * ident, 2) and row[f"overlap_{n}"] == overlap
    part = rows[-1]
    assert part["species_1"] == known[0].taxonomy.species and 295 <= part["overlap_1"] <= 305
    assert rows[0]["overlap_1"] >= 600  # full-length barcodes overlap along their whole length


def test_embedding_only_rows_name_the_species_without_identity(tiny_library, tiny_dna_pack, synthetic_split):
    from engine.identify import open_identifier

    ident = open_identifier(tiny_library, tiny_dna_pack, device="cpu", use_sequences=False)
    row = ident.identify(synthetic_split[1][:1])[0].as_row()
    assert row["species_1"] == row["top_match_species"] and row["ref_1"] == row["top_match_id"]
    assert row["top_identity"] == row["identity_1"] == row["overlap_1"] == ""


def test_the_project_keeps_overlaps_and_its_export_shows_the_evidence(tmp_path):
    from engine.export.project_csv import write_project_csv
    from engine.project import open_project
    from engine.project.writer import ItemResult, ProjectWriter
    from engine.records import RANKS, BarcodeQC

    tax = [Taxonomy("O", "F", "", "G", f"G s{n}", f"BOLD:A{n}") for n in range(3)]
    call = Call({r: RankCall(r, tax[0].get(r), 0.9) for r in RANKS})
    matches = [Match("R0", tax[0], 0.99, 0.998, 640), Match("R1", tax[0], 0.98, 0.99),
               Match("R2", tax[1], 0.95, 0.951, 655), Match("R3", tax[2], 0.9, 0.9012, 300)]
    p = open_project(tmp_path / "p.db", create=True)
    w = ProjectWriter(p)
    run = w.begin_run({"app_version": "test"})
    fid = w.register_file(str(tmp_path / "plate.fasta"), "barcodes", 1, 1, "a" * 64, run)
    w.write_batch(run, [ItemResult(fid, "S1", "S1", "dna", "ok", qc=BarcodeQC("ACGT" * 160, 640, 640, 0.0),
                                   call=call, call_modality="dna", matches=matches)], [fid])
    stored = p.conn.execute("SELECT record_id, overlap FROM matches ORDER BY position").fetchall()
    assert stored == [("R0", 640), ("R1", None), ("R2", 655), ("R3", 300)]
    write_project_csv(p, tmp_path / "out.csv")
    p.close()
    row = next(csv.DictReader((tmp_path / "out.csv").open()))
    assert row["top_identity"] == "99.8"
    assert [(row[f"species_{n}"], row[f"ref_{n}"], row[f"identity_{n}"], row[f"overlap_{n}"]) for n in (1, 2, 3)] == [
        ("G s0", "R0", "99.8", "640"), ("G s1", "R2", "95.1", "655"), ("G s2", "R3", "90.12", "300")]
