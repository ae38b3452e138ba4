"""Several libraries searched as one give the calls one library of all their records gives."""
from __future__ import annotations

import pytest

import engine.assign
from engine.build import add_barcodes, calibrate_library
from engine.errors import LibraryError
from engine.identify import open_identifier
from engine.library import ReferenceLibrary
from engine.models.dna_encoder import DnaEncoder


def _build(path, records, pack):
    lib = ReferenceLibrary.create(path)
    add_barcodes(lib, records, DnaEncoder.from_path(pack))
    calibrate_library(lib)
    lib.close()
    return path


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory, tiny_dna_pack, synthetic_split):
    """Library A: two genera; B: the other two; C: A's records then B's, in one library."""
    library = synthetic_split[0]
    genera = sorted({r.taxonomy.genus for r in library})
    a = [r for r in library if r.taxonomy.genus in genera[:2]]
    b = [r for r in library if r.taxonomy.genus in genera[2:]]
    d = tmp_path_factory.mktemp("libs")
    return _build(d / "own.db", a, tiny_dna_pack), _build(d / "bold.db", b, tiny_dna_pack), \
        _build(d / "all.db", a + b, tiny_dna_pack)


def _calls(identifier, records):
    return [r.as_row() for r in identifier.identify(records)]


def test_two_libraries_call_as_one_library_of_both(two_and_one, tiny_dna_pack, synthetic_split, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    own, bold, both = two_and_one
    queries = synthetic_split[1] + synthetic_split[2]
    together = _calls(open_identifier([own, bold], tiny_dna_pack), queries)
    single = _calls(open_identifier(both, tiny_dna_pack), queries)
    differing = [c for c in together[0] if c != "top_match_library"
                 and any(t[c] != s[c] for t, s in zip(together, single))]
    assert differing == []
    own_genera = {t.genus for t in ReferenceLibrary.open(own).references("dna").taxonomy}
    for row in together:
        if row["top_match_id"]:
            library = "own.db" if row["top_match_species"].split()[0] in own_genera else "bold.db"
            assert row["top_match_library"] == library, row
    assert {r["top_match_library"] for r in single} == {""}  # one library: the column stays empty


def test_the_union_is_calibrated_once_and_kept(two_and_one, tiny_dna_pack, synthetic_split, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    own, bold, _ = two_and_one
    first = open_identifier([own, bold], tiny_dna_pack).assigner
    assert list((tmp_path / "cache").rglob("library-sets/*.json"))

    def no_second_calibration(*a, **k):
        raise AssertionError("the union was calibrated again")

    monkeypatch.setattr(engine.assign, "calibrate", no_second_calibration)
    again = open_identifier([own, bold], tiny_dna_pack).assigner
    assert again.calibration == first.calibration


def test_libraries_of_different_models_are_refused(two_and_one, tmp_path, monkeypatch):
    own, bold, _ = two_and_one
    other = tmp_path / "other.db"
    lib = ReferenceLibrary.create_from(ReferenceLibrary.open(bold), other)
    model = lib.model_for("dna")
    lib._set_meta(**{"model.dna": __import__("json").dumps(dict(model, sha256="f" * 64, name="another"))})
    lib.close()
    with pytest.raises(LibraryError, match="same model"):
        open_identifier([own, other])


def test_identify_takes_library_twice_and_names_each_match_s_library(two_and_one, tiny_dna_pack, synthetic_split,
                                                                     tmp_path, monkeypatch):
    import csv

    from engine.cli import main
    from tests.synthetic import write_fasta

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    own, bold, _ = two_and_one
    fasta = tmp_path / "plate.fasta"
    write_fasta(fasta, synthetic_split[1])
    out = tmp_path / "calls.csv"
    assert main(["identify", str(fasta), "--library", str(own), "--library", str(bold), "--model",
                 str(tiny_dna_pack), "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(synthetic_split[1])
    assert {r["top_match_library"] for r in rows} == {"own.db", "bold.db"}
