"""Re-matching a project's photos against a library that learned the lab's barcoded photos (issue 18).

A real tiny project is imported from a folder the test writes: barcodes the tiny library calls,
photos of eight of those specimens, photos of four photo-only specimens (trap-N) and of one whose
barcode failed QC (FAIL-1). The photos are of two families, each its own pattern
(tests.synthetic_photos); the image pack is trained into the tiny library's DNA space.
"""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from engine.progress import Cancelled
from tests.engine.test_image import photo_folder, trained_pack  # noqa: F401 - fixtures: the tiny image pack
from tests.synthetic import write_tsv
from tests.synthetic_photos import make_photo

PHOTO_ONLY = {"trap-0": "Synthidae0", "trap-1": "Synthidae1", "trap-2": "Synthidae0", "trap-3": "Synthidae1",
              "FAIL-1": "Synthidae1"}  # specimen key -> the family its photo shows


@pytest.fixture(scope="module")
def pack(tmp_path_factory, trained_pack):
    """The tiny image pack without its domain: fitted on 16 photos, the domain's thresholds leave every
    photo outside it (no call). Without one the identifier calls a photo from the library's photo
    references when it has any, else from its DNA references (the fallback), as a real pack does
    for photos inside its domain."""
    out = tmp_path_factory.mktemp("pack") / "tiny-image"
    shutil.copytree(trained_pack[0], out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("domain", None)
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


@pytest.fixture
def libraries(tiny_library, tiny_dna_pack):
    """(the tiny library, the DNA pack it was built with)."""
    return tiny_library, tiny_dna_pack


@pytest.fixture
def sample(tmp_path, synthetic_split):
    """(folder, {barcoded specimen with a photo: its family})."""
    import numpy as np

    _, known, _ = synthetic_split
    folder = tmp_path / "sample"
    (folder / "photos").mkdir(parents=True)
    write_tsv(folder / "barcodes.tsv", known)
    with open(folder / "barcodes.tsv", "a", encoding="utf-8") as fh:
        fh.write("\t".join(["FAIL-1", "", "", "", "", "", "NOT A BARCODE"]) + "\n")
    rng = np.random.default_rng(7)
    barcoded = {r.specimen_id: r.taxonomy.family for r in known[:8]}
    for key, family in {**barcoded, **PHOTO_ONLY}.items():
        make_photo(family, rng).save(folder / "photos" / f"{key}.jpg", quality=90)
    return folder, barcoded


def _import_and_learn(tmp_path, folder, libraries, pack, identify_photos: bool = True):
    """(project path, library path, settings to re-match with): the folder imported against the tiny
    library, then its barcoded photos learned into a new library (a copy of the tiny one)."""
    from engine.identify_image import learn_barcoded_photos
    from engine.project import ImportSettings, import_folders

    project = tmp_path / "p.bioscan.db"
    tiny_library, dna_pack = libraries
    rep = import_folders([folder], project, ImportSettings(library=str(tiny_library), dna_model=str(dna_pack),
                                                           image_model=str(pack), identify_photos=identify_photos,
                                                           device="cpu"))
    assert rep.status == "completed"
    library = tmp_path / "lab.db"
    learned = learn_barcoded_photos(project, library, base_library=tiny_library, image_model=pack, device="cpu")
    assert learned.added == 8 and learned.created
    return project, library, ImportSettings(library=str(library), image_model=str(pack), device="cpu")


def _photo_items(project) -> dict[str, dict]:
    """specimen key -> its photo item (id, status, error, call_references, run_id, call names by rank)."""
    con = sqlite3.connect(project)
    out = {}
    for key, iid, status, error, refs, run_id in con.execute(
            "SELECT s.specimen_key, i.id, i.status, i.error, i.call_references, i.run_id FROM items i "
            "JOIN specimens s ON s.id = i.specimen_id WHERE i.modality = 'photo'"):
        calls = dict(con.execute("SELECT rank, name FROM calls WHERE item_id = ?", [iid]).fetchall())
        top = con.execute("SELECT record_id FROM matches WHERE item_id = ? AND position = 0", [iid]).fetchone()
        out[key] = {"id": iid, "status": status, "error": error, "references": refs, "run_id": run_id,
                    "calls": calls, "top": top[0] if top else None}
    con.close()
    return out


def _specimens(project) -> dict[str, dict]:
    con = sqlite3.connect(project)
    con.row_factory = sqlite3.Row
    rows = {r["specimen_key"]: dict(r) for r in con.execute("SELECT * FROM specimens")}
    con.close()
    return rows


def _summaries_are_what_the_items_give(project) -> None:
    """Every specimen row equals what the one rule (refresh_specimens) computes from its items now."""
    from engine.project.summary import refresh_specimens

    con = sqlite3.connect(project, isolation_level=None)
    con.row_factory = sqlite3.Row

    def rows():
        return {r["id"]: {k: r[k] for k in r.keys() if k != "updated_at"}
                for r in con.execute("SELECT * FROM specimens ORDER BY id")}
    stored = rows()
    con.execute("BEGIN")
    refresh_specimens(con, list(stored))
    recomputed = rows()
    con.execute("ROLLBACK")
    con.close()
    assert recomputed == stored


def _names(item) -> tuple:
    return tuple(item["calls"].get(r, "") for r in ("order", "family", "genus", "species", "bin_uri"))


def test_photo_only_specimens_are_called_from_the_learned_photo_references_and_reviews_are_kept(
        tmp_path, sample, libraries, pack):
    from engine import rematch_photos
    from engine.models.pack import sha256_file
    from engine.project import open_project

    folder, barcoded = sample
    project, library, settings = _import_and_learn(tmp_path, folder, libraries, pack)
    before, specimens_before = _photo_items(project), _specimens(project)
    # the import matched every photo against the DNA references: the tiny library had no photo references
    assert {before[k]["references"] for k in PHOTO_ONLY} == {"dna"}
    assert {specimens_before[k]["call_modality"] for k in PHOTO_ONLY} == {"image"}
    with open_project(project) as p:
        p.annotate(p.specimen_id("trap-0"), "accept", "tester")
        p.annotate(p.specimen_id("trap-1"), "override", "tester", {"family": "Synthidae0"}, note="looks striped")
    reviews_before = _table(project, "annotations")
    shutil.move(folder, tmp_path / "moved")  # the stored embeddings are of this image model: no file is read

    rep = rematch_photos(project, settings)

    after, specimens = _photo_items(project), _specimens(project)
    assert rep.status == "completed" and rep.scope == "photo-only" and rep.errors == [] and rep.embedded == 0
    assert rep.photos == len(PHOTO_ONLY)
    for key, family in PHOTO_ONLY.items():
        item = after[key]
        assert item["references"] == "image" and item["run_id"] == rep.run_id
        assert item["top"].split(":")[0] in barcoded  # a learned photo reference: "<specimen>:<photo>"
        assert item["calls"]["family"] == family, key
        assert specimens[key]["call_modality"] == "image" and specimens[key]["call_item_id"] == item["id"]
        assert specimens[key]["family"] == family
    for key in barcoded:  # their barcodes make their calls: left as the import wrote them
        assert after[key] == before[key]
    changed = sum(_names(after[k]) != _names(before[k]) for k in PHOTO_ONLY)
    assert changed > 0 and rep.calls_changed == changed
    assert rep.summary().startswith(f"{len(PHOTO_ONLY)} photos re-matched against lab.db: {changed} calls changed, "
                                    "0 errors")
    # reviews: never overwritten; an override still decides the names shown, an accept of a changed call is stale
    assert _table(project, "annotations") == reviews_before
    machine = ("order", "family", "genus", "species", "bin_uri")
    moved = {k for k in ("trap-0", "trap-1")
             if [specimens[k][r] for r in machine] != [specimens_before[k][r] for r in machine]}
    assert rep.reviews_kept == len(moved)
    assert specimens["trap-1"]["review"] == "overridden" and specimens["trap-1"]["final_family"] == "Synthidae0"
    assert specimens["trap-0"]["review"] == ("stale" if "trap-0" in moved else "accepted")
    _summaries_are_what_the_items_give(project)
    with open_project(project, readonly=True) as p:
        run = p.import_runs()[0]
    assert run["id"] == rep.run_id and run["status"] == "completed" and run["inputs"] == []
    assert run["settings"]["operation"] == "rematch photos" and run["settings"]["scope"] == "photo-only"
    assert run["library_path"] == str(library) and run["library_sha256"] == sha256_file(library)
    assert [m["modality"] for m in run["models"]] == ["image"]
    assert run["counts"]["items"] == len(PHOTO_ONLY) and run["counts"]["calls_changed"] == changed


def _table(project, name: str) -> list[tuple]:
    con = sqlite3.connect(project)
    rows = con.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
    con.close()
    return rows


def test_photos_never_identified_are_read_again_and_a_missing_file_is_that_photos_error(
        tmp_path, sample, libraries, pack):
    from engine import rematch_photos

    folder, barcoded = sample
    project, _, settings = _import_and_learn(tmp_path, folder, libraries, pack, identify_photos=False)
    before = _photo_items(project)
    assert {before[k]["status"] for k in PHOTO_ONLY} == {"pending"} and not any(before[k]["calls"] for k in before)
    (folder / "photos" / "trap-3.jpg").unlink()

    rep = rematch_photos(project, settings)

    after, specimens = _photo_items(project), _specimens(project)
    assert rep.status == "completed" and rep.photos == len(PHOTO_ONLY) and rep.embedded == len(PHOTO_ONLY) - 1
    assert [k for k, _ in rep.errors] == ["trap-3"] and "the photo file is gone" in rep.errors[0][1]
    assert after["trap-3"]["status"] == "error" and "trap-3.jpg" in after["trap-3"]["error"]
    assert specimens["trap-3"]["status"] == "error" and specimens["trap-3"]["n_photos"] == 1
    for key in set(PHOTO_ONLY) - {"trap-3"}:
        assert after[key]["references"] == "image" and after[key]["calls"]["family"] == PHOTO_ONLY[key]
        assert specimens[key]["status"] == "ok"
    assert rep.calls_changed == len(PHOTO_ONLY) - 1  # from no call at all
    assert rep.summary() == (f"{len(PHOTO_ONLY)} photos re-matched against lab.db: {len(PHOTO_ONLY) - 1} calls "
                             "changed, 1 errors")
    _summaries_are_what_the_items_give(project)

    every = rematch_photos(project, settings, scope="all-photos")
    assert every.photos == len(PHOTO_ONLY) + len(barcoded) and [k for k, _ in every.errors] == ["trap-3"]
    assert every.embedded == len(barcoded)  # never identified; the others' embeddings the run before stored
    assert {_photo_items(project)[k]["references"] for k in barcoded} == {"image"}
    _summaries_are_what_the_items_give(project)


def test_cancel_keeps_the_batches_written_and_a_second_run_finishes_the_work(
        tmp_path, sample, libraries, pack):
    from dataclasses import replace

    from engine import rematch_photos
    from engine.project import open_project

    folder, _ = sample
    project, _, settings = _import_and_learn(tmp_path, folder, libraries, pack)
    items_before = len(_photo_items(project))

    def cancel_after_the_first_batch(done, total, message):
        if done >= 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        rematch_photos(project, replace(settings, photo_batch_size=2), progress=cancel_after_the_first_batch)
    with open_project(project, readonly=True) as p:
        run = p.import_runs()[0]
    assert run["status"] == "cancelled" and "kept" in run["message"]
    after = _photo_items(project)
    assert len(after) == items_before
    assert sorted(k for k, it in after.items() if it["run_id"] == run["id"]) == ["FAIL-1", "trap-0"]  # batch one
    assert all(after[k]["references"] == ("image" if k in ("FAIL-1", "trap-0") else "dna") for k in PHOTO_ONLY)
    _summaries_are_what_the_items_give(project)

    again = rematch_photos(project, settings)
    assert again.status == "completed" and again.photos == len(PHOTO_ONLY)
    assert {_photo_items(project)[k]["references"] for k in PHOTO_ONLY} == {"image"}
    _summaries_are_what_the_items_give(project)


def test_cli_rematch_prints_the_summary_and_fails_only_when_it_cannot_run(
        tmp_path, sample, libraries, pack, capsys):
    from engine.cli import main

    folder, _ = sample
    project, library, _ = _import_and_learn(tmp_path, folder, libraries, pack)
    (folder / "photos" / "trap-3.jpg").unlink()  # its embedding is stored: no error
    args = ["rematch", "--project", str(project), "--library", str(library), "--image-model", str(pack),
            "--device", "cpu", "-q"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{len(PHOTO_ONLY)} photos re-matched against lab.db: " in err and ", 0 errors" in err
    assert main(args + ["--all-photos"]) == 0
    assert f"{len(PHOTO_ONLY) + 8} photos re-matched against lab.db: " in capsys.readouterr().err
    assert main(["rematch", "--project", str(tmp_path / "none.db"), "--library", str(library), "-q"]) == 1
    assert "no such project" in capsys.readouterr().err
    with sqlite3.connect(project) as con:
        runs = [json.loads(s)["operation"] for (s,) in con.execute("SELECT settings FROM import_runs WHERE id > 1")]
    assert runs == ["rematch photos", "rematch photos"]
