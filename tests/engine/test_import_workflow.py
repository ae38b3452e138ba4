"""One import for every front end, specimens rather than files, and a project file that survives copying.

The GUI's import (bioscan_desktop.jobs.run_import, with the user's Settings) and `bioscan import`
must write the same project for the same folder; the same specimen in two files is one specimen
with a visible conflict when its barcodes disagree; a moved or copied folder does not double it.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.project import ImportSettings, SpecimenFilter, import_folders, open_project
from engine.records import Barcode
from tests.synthetic import make_barcodes, write_fasta, write_tsv
from tests.synthetic_photos import make_photo

REPO = Path(__file__).resolve().parents[2]

# what two imports of one folder must agree on, table by table (ids, paths and times aside)
COMPARED = {
    "specimens": "SELECT specimen_key, processid, sampleid, status, modalities, n_photos, n_barcodes, n_errors, "
                 "error, call_modality, \"order\", family, genus, species, bin_uri, confidence, novel, novel_rank, "
                 "top_match_id, top_similarity, identity, qc_flags, disagreement_rank, conflict_rank "
                 "FROM specimens ORDER BY specimen_key",
    "items": "SELECT s.specimen_key, i.record_key, i.modality, i.status, i.error, i.sequence, i.qc_flags, "
             "i.novel, i.confidence, f.name FROM items i JOIN specimens s ON s.id = i.specimen_id "
             "JOIN files f ON f.id = i.file_id ORDER BY s.specimen_key, f.name, i.record_key",
    "calls": "SELECT s.specimen_key, c.modality, c.rank, c.name, c.confidence FROM calls c "
             "JOIN specimens s ON s.id = c.specimen_id ORDER BY 1, 2, 3",
    "matches": "SELECT s.specimen_key, m.modality, m.position, m.record_id, m.similarity, m.identity FROM matches m "
               "JOIN specimens s ON s.id = m.specimen_id ORDER BY 1, 2, 3",
    "embeddings": "SELECT s.specimen_key, e.modality, e.model_sha256, e.vector FROM embeddings e "
                  "JOIN specimens s ON s.id = e.specimen_id ORDER BY 1, 2",
}


def table_rows(path: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        return {name: con.execute(sql).fetchall() for name, sql in COMPARED.items()}
    finally:
        con.close()


@pytest.fixture
def lab_folder(tmp_path) -> Path:
    """Barcodes as a BIOSCAN-5M table and a FASTA, and photos named by processid (paired) and not."""
    recs = make_barcodes(genera=2, species_per_genus=2, records_per_species=4, seed=11)
    root = tmp_path / "plate 7"
    for sub in ("dna", "photos"):
        (root / sub).mkdir(parents=True)
    write_tsv(root / "dna" / "plate.tsv", recs[:10])
    write_fasta(root / "dna" / "rest.fasta", recs[10:])
    rng = np.random.default_rng(3)
    for r in recs[:3]:
        make_photo("Synthidae0", rng).save(root / "photos" / f"{r.specimen_id}_dorsal.jpg")
    make_photo("Synthidae1", rng).save(root / "photos" / "unlabelled bee.jpg")
    return root


def test_gui_and_cli_imports_of_one_folder_give_the_same_project(lab_folder, tmp_path):
    """The bundled library and both bundled models, as a technician's first import uses them: the
    desktop app's scripted import (the Import panel's job, in a real window offscreen) vs `bioscan import`."""
    gui_db, cli_db = tmp_path / "gui.db", tmp_path / "cli.db"
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text('{"device": "cpu", "user_name": "tech"}', encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", BIOSCAN_DESKTOP_CONFIG=str(config))
    gui = subprocess.run([sys.executable, "-m", "bioscan_desktop.app", "--project", str(gui_db), "--import",
                          str(lab_folder), "--quit-when-done"], capture_output=True, text=True, cwd=REPO,
                         timeout=600, env=env)
    assert gui.returncode == 0, gui.stderr
    done = subprocess.run([sys.executable, "-m", "engine.cli", "import", str(lab_folder), "--project", str(cli_db),
                           "--device", "cpu", "-q"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    gui, cli = table_rows(gui_db), table_rows(cli_db)
    for table in COMPARED:
        assert gui[table] == cli[table], table
    # the photos were identified by the bundled image model in both, not left pending
    with open_project(gui_db, readonly=True) as p:
        photo_only = p.specimen("unlabelled bee").specimen
        assert photo_only["status"] in ("ok", "novel") and photo_only["call_modality"] == "image"
        models = {m["modality"] for m in p.import_runs()[0]["models"]}
        assert models == {"dna", "image"}
        assert p.import_runs()[0]["settings"]["library"] == ""  # the bundled default, recorded as such


def two_orders(n: int, seed: int) -> tuple[list[Barcode], list[Barcode]]:
    """Records of two synthetic genera from different (synthetic) orders, ids shared between the lists."""
    recs = make_barcodes(genera=2, species_per_genus=1, records_per_species=n, seed=seed)
    a = [r for r in recs if r.taxonomy.genus == "Genus0"]
    b = [r for r in recs if r.taxonomy.genus == "Genus1"]
    return a, b


def test_the_same_id_in_two_files_is_one_specimen_with_a_conflict_when_they_disagree(
        tmp_path, tiny_library, tiny_dna_pack, synthetic_split):
    library, known, _ = synthetic_split
    genus0 = next(r for r in known if r.taxonomy.genus == "Genus0")
    genus1 = next(r for r in known if r.taxonomy.genus == "Genus1")
    same = next(r for r in known if r.taxonomy.species == genus0.taxonomy.species and r is not genus0) \
        if sum(r.taxonomy.species == genus0.taxonomy.species for r in known) > 1 else \
        next(r for r in library if r.taxonomy.species == genus0.taxonomy.species)
    root = tmp_path / "in"
    root.mkdir()
    write_fasta(root / "run1.fasta", [Barcode("SPEC-1", genus0.sequence, ""), Barcode("SPEC-2", genus0.sequence, "")])
    write_fasta(root / "run2.fasta", [Barcode("SPEC-1", genus1.sequence, ""), Barcode("SPEC-2", same.sequence, "")])
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu")
    import_folders([root], tmp_path / "p.db", settings)
    with open_project(tmp_path / "p.db", readonly=True) as p:
        assert p.count_specimens() == 2
        mixed, agreed = p.specimen("SPEC-1").specimen, p.specimen("SPEC-2").specimen
        assert mixed["n_barcodes"] == 2 and agreed["n_barcodes"] == 2
        assert mixed["conflict_rank"] == "family"  # Genus0 of Synthidae0 vs Genus1 of Synthidae1
        assert agreed["conflict_rank"] == ""
        assert [r["specimen_key"] for r in p.list_specimens(SpecimenFilter(conflict=True))] == ["SPEC-1"]


def test_a_moved_folder_is_followed_and_a_copied_one_is_not_imported_twice(tmp_path, tiny_library, tiny_dna_pack):
    recs = make_barcodes(genera=2, species_per_genus=2, records_per_species=3, seed=5)
    first = tmp_path / "drive" / "plate1"
    first.mkdir(parents=True)
    write_tsv(first / "plate.tsv", recs)
    rng = np.random.default_rng(0)
    make_photo("Synthidae0", rng).save(first / f"{recs[0].specimen_id}.jpg")
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu")
    project = tmp_path / "p.db"
    import_folders([first], project, settings)

    moved = tmp_path / "archive" / "plate1"
    moved.parent.mkdir()
    shutil.move(str(first), moved)
    rep = import_folders([moved], project, settings)
    assert (rep.files_moved, rep.files_duplicate, rep.items) == (2, 0, 0)
    with open_project(project, readonly=True) as p:
        assert p.count_specimens() == len(recs)
        assert {Path(f["path"]).parent for f in p.files()} == {moved}  # photos are found where they are now

    copy = tmp_path / "usb" / "plate1 copy"
    shutil.copytree(moved, copy)
    rep = import_folders([moved, copy], project, settings)
    assert rep.files_duplicate == 2 and rep.items == 0
    assert any("same content as" in n and "not imported twice" in n for n in rep.notes)
    assert "2 already imported from another path" in rep.summary()
    with open_project(project, readonly=True) as p:
        assert p.count_specimens() == len(recs)
        assert p.conn.execute("SELECT count(*) FROM items WHERE modality = 'dna'").fetchone()[0] == len(recs)


def test_a_fifo_and_a_device_link_in_the_folder_are_skipped_not_waited_on(tmp_path, tiny_library, tiny_dna_pack):
    recs = make_barcodes(genera=1, species_per_genus=2, records_per_species=2, seed=2)
    root = tmp_path / "in"
    root.mkdir()
    write_fasta(root / "good.fasta", recs)
    os.mkfifo(root / "pipe.fasta")
    (root / "zero.fasta").symlink_to("/dev/zero")
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu")
    result = {}
    worker = threading.Thread(target=lambda: result.update(rep=import_folders([root], tmp_path / "p.db", settings)),
                              daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the import hung on a FIFO or a device"
    rep = result["rep"]
    assert rep.status == "completed" and rep.files_ignored == 2
    assert any("pipe.fasta" in n and "named pipe" in n for n in rep.notes)
    assert any("zero.fasta" in n and "a device" in n for n in rep.notes)
    with open_project(tmp_path / "p.db", readonly=True) as p:
        assert p.count_specimens() == len(recs)


def test_a_machine_failure_leaves_the_batch_for_the_next_run(tmp_path, tiny_library, tiny_dna_pack):
    from engine.identify import open_identifier

    recs = make_barcodes(genera=1, species_per_genus=2, records_per_species=3, seed=8)
    (tmp_path / "in").mkdir()
    write_fasta(tmp_path / "in" / "plate.fasta", recs)
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu", batch_size=4)
    ident = open_identifier(tiny_library, tiny_dna_pack, device="cpu")
    real_match, calls = ident.match, []

    def out_of_memory_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated")
        return real_match(*args, **kwargs)

    ident.match = out_of_memory_once
    rep = import_folders([tmp_path / "in"], tmp_path / "p.db", settings, identifier=ident)
    assert rep.status == "completed" and rep.retry == 4 and "4 items to retry" in rep.summary()
    with open_project(tmp_path / "p.db", readonly=True) as p:
        assert p.count_specimens() == len(recs) - 4
        assert p.count_specimens(SpecimenFilter(status="error")) == 0  # not stored as the records' error
    rep = import_folders([tmp_path / "in"], tmp_path / "p.db", settings)
    assert rep.items == 4 and rep.retry == 0
    with open_project(tmp_path / "p.db", readonly=True) as p:
        assert p.count_specimens() == len(recs) and p.count_specimens(SpecimenFilter(status="error")) == 0


def test_a_copy_of_the_project_file_made_while_it_is_open_holds_the_data(tmp_path, tiny_library, tiny_dna_pack):
    recs = make_barcodes(genera=1, species_per_genus=2, records_per_species=3, seed=4)
    (tmp_path / "in").mkdir()
    write_fasta(tmp_path / "in" / "plate.fasta", recs)
    project = tmp_path / "p.db"
    viewer = open_project(project, create=True)  # the GUI holds the project open all along
    import_folders([tmp_path / "in"], project,
                   ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu"))
    sid = viewer.specimen_id(recs[0].specimen_id)
    viewer.annotate(sid, "annotate", user="tech", note="legs missing")
    shutil.copy(project, tmp_path / "copy.db")  # the .db alone, as a user copies it
    with open_project(tmp_path / "copy.db", readonly=True) as copy:
        assert copy.count_specimens() == len(recs)
        assert copy.annotations(copy.specimen_id(recs[0].specimen_id))[0]["note"] == "legs missing"
    viewer.close()


def test_a_partial_copy_says_what_is_missing(tmp_path):
    project = tmp_path / "p.db"
    con = sqlite3.connect(project)  # what a copy of a never-checkpointed WAL database looks like: no tables
    con.execute("PRAGMA journal_mode = WAL")
    con.close()
    from engine.project import ProjectError

    with pytest.raises(ProjectError, match=r"holds no project tables.*p\.db-wal"):
        open_project(project)


@pytest.mark.parametrize("name", ["plate#42.db", "%41.db", "what?.db", "100% done.db"])
def test_a_project_path_is_opened_as_named(tmp_path, name):
    decoy = tmp_path / "A.db"
    with open_project(decoy, create=True) as p:
        decoy_id = p.meta["project_id"]
    with open_project(tmp_path / name, create=True) as p:
        pid = p.meta["project_id"]
    assert pid != decoy_id and (tmp_path / name).is_file()
    with open_project(tmp_path / name, readonly=True) as p:
        assert p.meta["project_id"] == pid


def test_a_reference_library_given_as_project_is_refused_and_left_untouched(tmp_path, tiny_library):
    from engine.models.pack import sha256_file
    from engine.project import ProjectError

    lib = tmp_path / "lib.db"
    shutil.copy(tiny_library, lib)
    before = sha256_file(lib)
    with pytest.raises(ProjectError, match="lib.db is a reference library, not a project"):
        open_project(lib, create=True)
    assert sha256_file(lib) == before and not (tmp_path / "lib.db-wal").exists()


def _create(path: str, barrier) -> str:
    barrier.wait()
    with open_project(path, create=True) as p:
        return p.meta["project_id"]


def test_two_processes_creating_one_new_project_both_succeed(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    path = str(tmp_path / "new.db")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            ids = pool.starmap(_create, [(path, barrier), (path, barrier)])
    assert ids[0] == ids[1]  # one project, created once


def test_import_settings_are_one_object_for_every_front_end():
    from bioscan_desktop.jobs import import_settings
    from bioscan_desktop.settings import Settings

    user = Settings(library_path="/labs/my.db", dna_model_path="/p/dna", image_model_path="/p/img",
                    min_confidence=0.7, device="cpu")
    assert import_settings(user) == dataclasses.replace(
        ImportSettings(), library="/labs/my.db", dna_model="/p/dna", image_model="/p/img", min_confidence=0.7,
        device="cpu")


def test_a_bold_data_package_and_a_bold_fasta_import_as_specimens_with_their_collection_data(
        tmp_path, tiny_library, tiny_dna_pack):
    from tests.engine.test_formats import bcdm_rows, write_bcdm

    root = tmp_path / "plate"
    root.mkdir()
    write_bcdm(root / "BOLD_Public.18-Dec-2023.tsv.gz", bcdm_rows())
    seq = make_barcodes(genera=1, species_per_genus=1, records_per_species=1, seed=9)[0].sequence
    (root / "bold.fas").write_text(f">GBCOU2225-13|Apion frumentarium|COI-5P|KF123456\n{seq}\n"
                                   f">GBCOU9999-13|Apion sp.|COI-3P|\n{seq}\n", encoding="utf-8")
    make_photo("Synthidae0", np.random.default_rng(1)).save(root / "GBCOU2225-13_dorsal.jpg")
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu",
                              identify_photos=False)
    rep = import_folders([root], tmp_path / "p.db", settings)
    assert rep.records_skipped == 3  # a COI-3P and a record without a sequence in the package, a COI-3P in the FASTA
    assert any("BOLD_Public.18-Dec-2023.tsv.gz: 3 COI-5P read; 2 skipped: 1 COI-3P, 1 no sequence" in n
               for n in rep.notes), rep.notes
    with open_project(tmp_path / "p.db", readonly=True) as p:
        keys = {r["specimen_key"] for r in p.list_specimens(limit=50)}
        assert keys == {"AAASF004-17", "AACTA051-20", "AACTA054-20", "GBCOU2225-13"}
        weevil = p.specimen("GBCOU2225-13")
        assert weevil.specimen["modalities"] == "dna+photo"  # the photo paired with the processid
        dna = next(i for i in weevil.items if i["modality"] == "dna")
        assert dna["given"]["genus"] == "Apion" and dna["given"]["species"] == "Apion frumentarium"
        fly = p.specimen("AAASF004-17").specimen
        assert fly["sampleid"] == "CBGSFMX-0301"
        assert fly["metadata"]["country"] == "Mexico" and fly["metadata"]["collectors"] == "E. Lugo"
        assert p.specimen_id("CBGSFMX-0301") == fly["id"]  # the sampleid is an alias


def test_the_shared_bold_data_packages_import(real_data, tmp_path, tiny_library, tiny_dna_pack):
    """The two real BOLD v5 packages: every COI-5P record with a sequence becomes a specimen (first 200 rows each)."""
    from engine.io import ReadStats, read_barcodes

    root = tmp_path / "packages"
    root.mkdir()
    for src in sorted((real_data / "raw" / "bold_data_packages").glob("*.tsv")):
        with open(src, encoding="utf-8") as fh:
            (root / src.name).write_text("".join(line for _, line in zip(range(201), fh)), encoding="utf-8")
    expected = set()
    for f in root.iterdir():
        stats = ReadStats()
        expected |= {r.specimen_id for r in read_barcodes(f, stats) if isinstance(r, Barcode)}
    assert len(expected) > 200
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu")
    rep = import_folders([root], tmp_path / "p.db", settings)
    assert rep.status == "completed"
    with open_project(tmp_path / "p.db", readonly=True) as p:
        stored = {r["specimen_key"] for r in p.iter_specimens()}
        assert expected <= stored
        with_country = sum(1 for r in p.iter_specimens() if (r["metadata"] or {}).get("country"))
        assert with_country >= len(expected) * 0.9


def test_identify_finds_inputs_by_the_import_rules_and_skips_a_fifo(tmp_path, tiny_library, tiny_dna_pack):
    recs = make_barcodes(genera=1, species_per_genus=2, records_per_species=2, seed=6)
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    write_fasta(root / "sub" / "saved as.txt", recs[:2])  # a FASTA saved as .txt
    write_fasta(root / "good.fasta", recs[2:])
    os.mkfifo(root / "pipe.fasta")
    out = tmp_path / "r.csv"
    done = subprocess.run([sys.executable, "-m", "engine.cli", "identify", str(root), "--library", str(tiny_library),
                           "--model", str(tiny_dna_pack), "--device", "cpu", "--out", str(out), "-q"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pipe.fasta: skipped: a named pipe (FIFO), not a file" in done.stderr
    import csv

    with open(out, encoding="utf-8") as fh:
        ids = {row["specimen_id"] for row in csv.DictReader(fh)}
    assert ids == {r.specimen_id for r in recs}


def test_the_confidence_a_specimen_shows_is_its_finest_linnaean_rank_not_its_bin(tmp_path):
    from engine.project.writer import ItemResult, ProjectWriter
    from engine.records import Call, RankCall

    conf = {"order": 0.99, "family": 0.99, "genus": 0.99, "species": 0.98, "bin_uri": 0.57}
    call = Call({r: RankCall(r, f"{r}-name", c) for r, c in conf.items()})
    assert call.shown_rank == "species"
    with open_project(tmp_path / "p.db", create=True) as p:
        w = ProjectWriter(p)
        run = w.begin_run({})
        fid = w.register_file(str(tmp_path / "x.fasta"), "barcodes", 1, 1, "", run)
        w.write_batch(run, [ItemResult(fid, "S1", "S1", "dna", "ok", call=call, call_modality="dna")], [fid])
        row = p.list_specimens()[0]
        assert row["confidence"] == pytest.approx(0.98) and row["bin_uri_confidence"] == pytest.approx(0.57)
        assert p.count_specimens(SpecimenFilter(max_confidence=0.7)) == 0  # not in the "needs review" queue
