"""The bundled default model pack and reference library, as a fresh install uses them."""
import csv

import pytest

from engine.cli import main
from engine.resources import default_library_path, default_model_path

pytestmark = pytest.mark.skipif(not default_library_path().is_file(),
                                reason="resources/ has no bundled library yet (see resources/README.md)")


def test_bundle_verifies_and_names_what_it_holds(capsys):
    from engine.identify import open_identifier

    ident = open_identifier(device="cpu")
    # built from all of barcodes.tsv (38,963 records of 2,625 species) and barcodes_extra.tsv's 461
    # Apache-2.0 rows (resources/README.md): 39,424 records of 2,868 species
    assert len(ident.refs.record_ids) == 39424
    assert len({t.species for t in ident.refs.taxonomy}) == 2868
    sources = {r[0] for r in ident.library.db.execute("SELECT DISTINCT source FROM refs WHERE modality = 'dna'")}
    assert sources == {"barcodes.tsv", "barcodes_extra_apache.tsv"}
    # and the training part of each labelled photo set as photo references (resources/README.md step 4)
    assert ident.library.count("image") > 4000
    # with the references' sequences: identity mode by default, every reference aligned to
    assert ident.library.has_sequences and ident.use_identity and ident.library.packs_sequences
    assert sum(s is not None for s in ident.refs.sequences) == 39424
    assert ident.encoder.pack.path.resolve() == default_model_path("dna").resolve()
    assert main(["--version", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert ident.encoder.pack.ident in out and "sha256" in out


def test_demo_without_the_shared_data_says_the_bundle_is_ready(monkeypatch, capsys, tmp_path):
    import engine.demo

    monkeypatch.setattr(engine.demo, "find_shared_data", lambda: None)
    assert main(["demo", "--out", str(tmp_path / "demo.csv"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "39,424 references" in err and "bioscan identify FOLDER" in err
    assert not (tmp_path / "demo.csv").exists()


@pytest.mark.real_data
def test_demo_identifies_real_records_outside_the_library(real_data, tmp_path, capsys):
    out = tmp_path / "demo.csv"
    assert main(["demo", "--out", str(out), "-q", "-n", "60"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 60
    err = capsys.readouterr().err
    agree = int(err.split("agrees with BOLD's identification: ")[1].split("/")[0])
    # new records of (mostly) library species: nearly all species calls match BOLD's
    assert agree >= 50
    # aligned: the top identity and the closest reference of the best species, with its overlap
    called = [r for r in rows if r["status"] == "ok"]
    assert called and all(r["top_identity"] and r["ref_1"] and int(r["overlap_1"]) > 0 for r in called)
    assert sum(float(r["top_identity"]) >= 97.0 for r in called) >= 0.9 * len(called)


def test_a_partial_barcode_of_a_library_species_is_called_by_alignment(real_data):
    """Issue 17: a 300-bp fragment aligns at ~100 % to its species; by embedding alone it looked new."""
    from engine.identify import open_identifier
    from engine.io import read_barcodes
    from engine.records import Barcode

    ident = open_identifier(device="cpu")
    full = [r for r in read_barcodes(real_data / "barcodes.tsv") if isinstance(r, Barcode)][:4000:400]
    fragments = [Barcode(f"{r.specimen_id}-frag", r.sequence.replace("-", "")[100:400], "frag.fasta")
                 for r in full]
    results = ident.identify(fragments)
    rows = [r.as_row() for r in results]
    right = [row for row, r in zip(rows, full) if row["species"] == r.taxonomy.species]
    assert len(right) >= 0.8 * len(full)
    assert all(280 <= row["overlap_1"] <= 310 and row["top_identity"] >= 97.0 for row in right)
