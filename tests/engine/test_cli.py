"""The `bioscan` command as a user runs it (tiny real model and library)."""
import csv
import subprocess
import sys

import pytest

from engine.cli import main
from engine.identify import RESULT_COLUMNS
from tests.synthetic import write_fasta, write_tsv


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_identify_folder_writes_one_row_per_record(tmp_path, tiny_library, tiny_dna_pack, synthetic_split):
    _, known, novel = synthetic_split
    folder = tmp_path / "sample"
    (folder / "sub").mkdir(parents=True)
    write_fasta(folder / "known.fasta", known)
    write_fasta(folder / "sub" / "novel.fa", novel[:3])
    (folder / "broken.fasta").write_text("this is not a fasta file\n")
    (folder / "notes.md").write_text("ignored: not a barcode file")
    out = tmp_path / "res.csv"
    code = main(["identify", str(folder), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                 "--out", str(out), "-q", "--device", "cpu"])
    assert code == 0
    rows = read_rows(out)
    assert list(rows[0].keys()) == RESULT_COLUMNS
    assert len(rows) == len(known) + 3 + 1
    by_id = {r["specimen_id"]: r for r in rows}
    assert by_id[known[0].specimen_id]["species"] == known[0].taxonomy.species
    assert by_id[novel[0].specimen_id]["status"] == "novel"
    assert by_id[novel[0].specimen_id]["genus"] == novel[0].taxonomy.genus
    broken = [r for r in rows if r["source_file"].endswith("broken.fasta")]
    assert broken[0]["status"] == "error" and "malformed FASTA" in broken[0]["error"]


def test_nothing_identifiable_exits_1_with_a_reason(tmp_path, tiny_library, tiny_dna_pack, capsys):
    f = tmp_path / "prot.fasta"
    f.write_text(">p1\nMKVLEEFQLIPRSTMKVLEEFQ\n")
    code = main(["identify", str(f), "--library", str(tiny_library), "--model", str(tiny_dna_pack), "-q",
                 "--out", str(tmp_path / "o.csv")])
    assert code == 1
    assert "no record could be identified" in capsys.readouterr().err


def test_missing_library_is_one_line_error(tmp_path, tiny_dna_pack, capsys):
    f = tmp_path / "x.fasta"
    f.write_text(">a\nACGT\n")
    code = main(["identify", str(f), "--library", str(tmp_path / "nope.db"), "--model", str(tiny_dna_pack)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bioscan: error: {tmp_path / 'nope.db'}: no such reference library"]


def test_library_build_then_add(tmp_path, tiny_dna_pack, synthetic_split):
    library, known, _ = synthetic_split
    tsv1, tsv2 = tmp_path / "a.tsv", tmp_path / "b.tsv"
    write_tsv(tsv1, library[:40])
    write_tsv(tsv2, library[40:] + known)
    db = tmp_path / "lib.db"
    assert main(["library", "build", "--barcodes", str(tsv1), "--out", str(db), "--model", str(tiny_dna_pack), "-q"]) == 0
    assert main(["library", "build", "--barcodes", str(tsv2), "--out", str(db), "--model", str(tiny_dna_pack),
                 "--add", "-q"]) == 0
    from engine.library import ReferenceLibrary

    lib = ReferenceLibrary.open(db)
    assert lib.count("dna") == len(library) + len(known)
    assert lib.calibration["n_references"] == len(library) + len(known)
    # building over an existing file without --add refuses rather than overwriting
    assert main(["library", "build", "--barcodes", str(tsv1), "--out", str(db), "--model", str(tiny_dna_pack), "-q"]) == 1


def test_formula_cells_are_neutralised(tmp_path, tiny_library, tiny_dna_pack, synthetic_split):
    rec = synthetic_split[1][0]
    f = tmp_path / "evil.fasta"
    f.write_text(f">=HYPERLINK(\"http://x\")\n{rec.sequence}\n")
    out = tmp_path / "o.csv"
    main(["identify", str(f), "--library", str(tiny_library), "--model", str(tiny_dna_pack), "--out", str(out), "-q"])
    assert read_rows(out)[0]["specimen_id"].startswith("'=")


def test_console_script_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "engine.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("bioscan ")


def test_library_info_prints_the_calibration_as_json(tiny_library, capsys):
    import json

    assert main(["library", "info", str(tiny_library)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model.dna"]["name"] and int(info["model.dna"]["dim"]) > 0
    novelty = info["calibration"]["similarity"]["novelty"]
    assert len(novelty["weights"]) == 2 and 0 < novelty["threshold"] < 1.5


def test_output_cut_short_by_the_reader_is_not_an_error(tmp_path, tiny_library, tiny_dna_pack, synthetic_split):
    # `bioscan identify reads.fasta | head -1`: the reader closes the pipe while rows are still coming
    _, known, _ = synthetic_split
    fasta = tmp_path / "many.fasta"
    fasta.write_text("".join(f">q{i}\n{known[i % len(known)].sequence}\n" for i in range(1000)))  # rows > a pipe's 64 KB
    cmd = (f"'{sys.executable}' -m engine.cli identify '{fasta}' --library '{tiny_library}' "
           f"--model '{tiny_dna_pack}' --device cpu -q | head -1")
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True)
    assert r.stdout.startswith("specimen_id,")
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
    assert r.returncode == 0
