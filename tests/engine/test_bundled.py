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
    # built from all of barcodes.tsv: 38,963 records of 2,625 species
    assert len(ident.refs.record_ids) == 38963
    assert len({t.species for t in ident.refs.taxonomy}) == 2625
    assert not ident.library.has_sequences  # embeddings and labels only, no raw sequences
    assert ident.encoder.pack.path.resolve() == default_model_path("dna").resolve()
    assert main(["--version", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert ident.encoder.pack.ident in out and "sha256" in out


def test_demo_without_the_shared_data_says_the_bundle_is_ready(monkeypatch, capsys, tmp_path):
    import engine.demo

    monkeypatch.setattr(engine.demo, "find_shared_data", lambda: None)
    assert main(["demo", "--out", str(tmp_path / "demo.csv"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "38,963 references" in err and "bioscan identify FOLDER" in err
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
