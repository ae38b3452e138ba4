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
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bioscan:")]
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


# ------------------------------------------------------------------ errors say what happened
def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bioscan:")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _damage(path, keep: int = 100) -> None:
    """Overwrite a database past its first ``keep`` bytes (the header stays: SQLite opens it)."""
    data = bytearray(path.read_bytes())
    data[keep:] = bytes((i * 7919) % 251 for i in range(len(data) - keep))
    path.write_bytes(bytes(data))


def test_damaged_library_and_project_are_named_in_one_line(tmp_path, tiny_library, tiny_dna_pack, synthetic_split,
                                                           capsys):
    import shutil

    lib = tmp_path / "lib.db"
    shutil.copy(tiny_library, lib)
    _damage(lib, keep=4096 * 2)  # the schema page survives: the damage shows when the references are read
    fasta = tmp_path / "q.fasta"
    write_fasta(fasta, synthetic_split[1][:2])
    code = main(["identify", str(fasta), "--library", str(lib), "--model", str(tiny_dna_pack), "-q"])
    line = _one_error_line(capsys)
    assert code in (1, 2) and str(lib) in line and "damaged" in line, line
    _damage(lib)
    assert main(["library", "info", str(lib)]) == 1
    line = _one_error_line(capsys)
    assert f"{lib} is damaged" in line and "library build" in line
    project = tmp_path / "p.db"
    project.write_bytes(b"SQLite format 3\x00" + bytes(5000))
    assert main(["export", "--project", str(project), "--out", str(tmp_path / "o.csv")]) in (1, 2)
    assert str(project) in _one_error_line(capsys)
    assert not (tmp_path / "o.csv").exists()


def test_unexpected_errors_are_one_line_exit_2_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    import engine.report

    project = tmp_path / "p.db"
    from engine.project import open_project

    open_project(project, create=True).close()

    def broken(_project):
        raise ValueError("something the engine did not expect")

    monkeypatch.setattr(engine.report, "collect", broken)
    argv = ["report", "--project", str(project), "--out", str(tmp_path / "r.html")]
    assert main(argv) == 2
    assert _one_error_line(capsys) == ("bioscan: error: unexpected ValueError: something the engine did not expect "
                                       "(run again with --debug for the details, and please report it)")
    with pytest.raises(ValueError):
        main(argv + ["--debug"])
    monkeypatch.setenv("BIOSCAN_DEBUG", "1")
    with pytest.raises(ValueError):
        main(argv)
    monkeypatch.delenv("BIOSCAN_DEBUG")

    def no_space(_project):
        raise OSError(28, "No space left on device", str(tmp_path / "r.html"))

    monkeypatch.setattr(engine.report, "collect", no_space)
    assert main(argv) == 2
    assert _one_error_line(capsys) == f"bioscan: error: no space left on the disk for {tmp_path / 'r.html'}: " \
                                      "free some space, then run again"


def test_a_library_of_one_species_flags_a_query_of_another_order_novel(tmp_path, tiny_dna_pack, capsys):
    import csv as csv_module

    from tests.synthetic import make_barcodes

    one_species = [r for r in make_barcodes(genera=1, species_per_genus=1, records_per_species=8, seed=3)]
    other_order = make_barcodes(genera=1, species_per_genus=1, records_per_species=2, seed=11)  # unrelated sequences
    same = make_barcodes(genera=1, species_per_genus=1, records_per_species=10, seed=3)[8:]  # same species, new records
    tsv, lib = tmp_path / "one.tsv", tmp_path / "one.db"
    write_tsv(tsv, one_species)
    assert main(["library", "build", "--barcodes", str(tsv), "--out", str(lib), "--model", str(tiny_dna_pack),
                 "-q", "--device", "cpu"]) == 0
    assert "holds 1 species, too few to calibrate" in capsys.readouterr().err
    assert main(["library", "info", str(lib)]) == 0
    assert "too few to calibrate" in capsys.readouterr().err
    queries = tmp_path / "q.fasta"
    write_fasta(queries, [type(r)(f"other{i}", r.sequence, "", None) for i, r in enumerate(other_order)]
                + [type(r)(f"same{i}", r.sequence, "", None) for i, r in enumerate(same)])
    out = tmp_path / "r.csv"
    assert main(["identify", str(queries), "--library", str(lib), "--model", str(tiny_dna_pack), "--out", str(out),
                 "-q", "--device", "cpu"]) == 0
    assert "too few to calibrate" in capsys.readouterr().err
    rows = {r["specimen_id"]: r for r in csv_module.DictReader(out.open(encoding="utf-8"))}
    for i in range(len(other_order)):
        r = rows[f"other{i}"]
        assert (r["status"], r["novel_rank"], r["order"], r["species"]) == ("novel", "order", "", ""), r
    for i in range(len(same)):  # the fallback does not flag the species the library holds
        r = rows[f"same{i}"]
        assert (r["status"], r["species"]) == ("ok", one_species[0].taxonomy.species), r


def test_two_builds_of_the_same_new_library_at_once(tmp_path, tiny_dna_pack, synthetic_split):
    library = synthetic_split[0]
    tsv, out = tmp_path / "a.tsv", tmp_path / "lib.db"
    write_tsv(tsv, library)
    cmd = [sys.executable, "-m", "engine.cli", "library", "build", "--barcodes", str(tsv), "--out", str(out),
           "--model", str(tiny_dna_pack), "--device", "cpu", "-q"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "Traceback" not in loser and ("another process meanwhile" in loser or "exists already" in loser), loser
    from engine.library import ReferenceLibrary

    assert ReferenceLibrary.open(out).count("dna") == len(library)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tsv", "lib.db"]


def test_two_photos_of_one_specimen_keep_the_first_by_name(tmp_path, capsys):
    import numpy as np

    from engine.library import ReferenceLibrary
    from tests.synthetic_photos import make_photo

    photos = tmp_path / "photos"
    photos.mkdir()
    rows = [("b.jpg", "SPEC1", "Synthidae0"), ("a.jpg", "SPEC1", "Synthidae0"), ("c.jpg", "SPEC2", "Synthidae1"),
            ("d.jpg", "SPEC3", "Synthidae1")]
    rng = np.random.default_rng(0)
    for name, _, family in rows:
        make_photo(family, rng).save(photos / name)
    (photos / "labels.tsv").write_text("file\tprocessid\torder\tfamily\n" + "".join(
        f"{n}\t{pid}\tSynthoptera\t{fam}\n" for n, pid, fam in rows), encoding="utf-8")
    out = tmp_path / "photos.db"
    assert main(["library", "build", "--images", str(photos), "--out", str(out), "--device", "cpu", "-q"]) == 0
    err = capsys.readouterr().err
    assert "skipped SPEC1: b.jpg: a second photo of this specimen (a.jpg is used)" in err, err
    lib = ReferenceLibrary.open(out)
    assert lib.count("image") == 3, err
    assert dict(lib.db.execute("SELECT record_id, source FROM refs").fetchall())["SPEC1"] == "a.jpg"
