"""`bioscan import` -> `bioscan export` (CSV, Darwin Core Archive) and `bioscan report`, through the CLI."""
from __future__ import annotations

import csv
from collections import Counter
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np

from engine.cli import main
from engine.export.dwc import COLUMNS as DWC_COLUMNS
from engine.identify import RESULT_COLUMNS
from engine.project import open_project
from tests.synthetic import write_fasta, write_tsv
from tests.synthetic_photos import make_photo

DWC_TEXT = "{http://rs.tdwg.org/dwc/text/}"


@pytest.fixture(scope="module")
def imported(tmp_path_factory, synthetic_split, tiny_library, tiny_dna_pack):
    _, known, novel = synthetic_split
    d = tmp_path_factory.mktemp("export")
    src = d / "in"
    src.mkdir()
    write_tsv(src / "known.tsv", known)
    evil = type(novel[0])("=HYPERLINK(\"http://x\")", novel[0].sequence, "", novel[0].taxonomy)
    write_fasta(src / "novel.fasta", novel[1:] + [evil])
    (src / "broken.fasta").write_text(">bad\nMKVLEEFQPRSTW\n")
    make_photo("Synthidae0", np.random.default_rng(0)).save(src / f"{known[0].specimen_id}.jpg")
    project = d / "p.db"
    assert main(["import", str(src), "--project", str(project), "--library", str(tiny_library),
                 "--model", str(tiny_dna_pack), "--device", "cpu", "-q"]) == 0
    with open_project(project) as p:
        p.annotate(p.specimen_id(known[1].specimen_id), "override", user="Dr. Ana",
                   taxonomy={"species": "Genus9 species9", "genus": "Genus9"})
    return project, known, novel


def test_csv_export_has_identify_columns_photos_and_is_formula_safe(imported, tmp_path):
    project, known, novel = imported
    out = tmp_path / "out.csv"
    assert main(["export", "--project", str(project), "--format", "csv", "--out", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = {r["specimen_id"]: r for r in reader}
    assert reader.fieldnames[:len(RESULT_COLUMNS)] == RESULT_COLUMNS and "photo_paths" in reader.fieldnames
    assert len(rows) == len(known) + len(novel) + 1  # + the broken record
    k0 = rows[known[0].specimen_id]
    assert k0["status"] == "ok" and k0["species"] == known[0].taxonomy.species
    assert k0["photo_paths"].endswith(f"{known[0].specimen_id}.jpg") and k0["source_file"].endswith("known.tsv")
    assert float(k0["identity"]) > 0.97 and 0 < float(k0["species_confidence"]) <= 1
    assert rows[novel[1].specimen_id]["status"] == "novel" and rows[novel[1].specimen_id]["novel"] == "true"
    assert rows["bad"]["status"] == "error" and "not a DNA sequence" in rows["bad"]["error"]
    assert "'=HYPERLINK(\"http://x\")" in rows  # neutralised, not a formula
    over = rows[known[1].specimen_id]
    assert over["review"] == "overridden" and over["reviewed_species"] == "Genus9 species9"
    assert over["species"] == known[1].taxonomy.species  # the machine call is exported unchanged


def test_dwc_archive_is_structurally_valid(imported, tmp_path):
    project, known, novel = imported
    out = tmp_path / "dwca.zip"
    assert main(["export", "--project", str(project), "--format", "dwc", "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["eml.xml", "meta.xml", "occurrence.txt"]
        meta = ET.fromstring(zf.read("meta.xml"))
        eml = ET.fromstring(zf.read("eml.xml"))
        lines = zf.read("occurrence.txt").decode("utf-8").split("\n")
    core = meta.find(f"{DWC_TEXT}core")
    assert core.get("rowType") == "http://rs.tdwg.org/dwc/terms/Occurrence"
    assert core.find(f"{DWC_TEXT}files/{DWC_TEXT}location").text == "occurrence.txt"
    assert core.get("fieldsTerminatedBy") == "\\t" and core.get("ignoreHeaderLines") == "1"
    fields = {int(f.get("index")): f.get("term").rsplit("/", 1)[1] for f in core.findall(f"{DWC_TEXT}field")}
    header = lines[0].split("\t")
    assert [fields[i] for i in range(len(fields))] == header == DWC_COLUMNS
    id_index = int(core.find(f"{DWC_TEXT}id").get("index"))
    assert header[id_index] == "occurrenceID"
    for term in ("occurrenceID", "basisOfRecord", "scientificName", "taxonRank", "kingdom", "phylum", "class",
                 "order", "family", "genus", "identificationQualifier", "identifiedBy", "dateIdentified",
                 "associatedSequences", "identificationRemarks"):
        assert term in header
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]
    assert all(len(line.split("\t")) == len(header) for line in lines[1:] if line)
    assert len(rows) == len(known) + len(novel)  # the error-only specimen is not an occurrence
    assert len({r["occurrenceID"] for r in rows}) == len(rows)
    by_cat = {r["catalogNumber"]: r for r in rows}
    r0 = by_cat[known[0].specimen_id]
    assert (r0["scientificName"], r0["taxonRank"], r0["kingdom"]) == (known[0].taxonomy.species, "species", "Animalia")
    assert r0["identifiedBy"].startswith("bioscan-dna") and " against " in r0["identifiedBy"]
    assert r0["dateIdentified"][:2] == "20" and "BIOSCAN Desktop " in r0["identificationRemarks"]
    assert r0["associatedSequences"] == f"known.tsv#{known[0].specimen_id}"
    assert r0["associatedMedia"] == f"in/{known[0].specimen_id}.jpg"  # relative to the project's folder
    rn = by_cat[novel[1].specimen_id]
    assert (rn["taxonRank"], rn["scientificName"], rn["identificationQualifier"]) == (
        "genus", novel[1].taxonomy.genus, "aff.")
    assert "possibly new at rank species" in rn["identificationRemarks"]
    ro = by_cat[known[1].specimen_id]
    assert (ro["scientificName"], ro["identifiedBy"], ro["specificEpithet"]) == ("Genus9 species9", "Dr. Ana", "species9")
    assert ro["identificationVerificationStatus"] == "verified by expert"
    with open_project(project, readonly=True) as p:
        review = next(a for a in p.annotations(p.specimen_id(known[1].specimen_id)) if a["action"] == "override")
    assert ro["dateIdentified"] == review["created_at"]  # the review's time, not the import's
    assert f"machine call by {r0['identifiedBy']}" in ro["identificationRemarks"]
    assert f"species {known[1].taxonomy.species}" in ro["identificationRemarks"]  # the machine's name is kept
    assert eml.find("dataset/title").text and eml.find("dataset/pubDate").text
    assert eml.get("packageId") == r0["occurrenceID"].rsplit(":", 1)[0]  # urn:bioscan-desktop:<project id>


@pytest.mark.parametrize("suffix,magic", [(".pdf", b"%PDF"), (".png", b"\x89PNG"), (".html", b"<!doctype html>")])
def test_report_formats(imported, tmp_path, suffix, magic):
    project, known, novel = imported
    out = tmp_path / f"report{suffix}"
    assert main(["report", "--project", str(project), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 2000
    if suffix == ".html":
        text = data.decode("utf-8")
        assert "Synthoptera" in text and f"Novel specimens ({len(novel)}, flagged by their barcodes)" in text
        assert "not a DNA sequence" in text and '=HYPERLINK(&quot;http://x&quot;)' in text  # escaped


def test_report_data_counts(imported):
    from engine.report import collect, error_kind

    project, known, novel = imported
    with open_project(project, readonly=True) as p:
        data = collect(p)
    assert data.status == {"ok": len(known), "novel": len(novel), "error": 1, "pending": 0}
    assert data.orders == [("Synthoptera", len(known) + len(novel)), ("(uncalled)", 1)]
    assert sum(n for _, n in data.families) == len(known) + len(novel) + 1
    assert [s["specimen_key"] for s in data.novel] and all(s["status"] == "novel" for s in data.novel)
    assert data.error_kinds == [("QC: not a DNA sequence", 1)]
    assert error_kind("x y.jpg: truncated or damaged image (broken data stream)") == "truncated or damaged image"


def test_report_refuses_unknown_format(imported, tmp_path, capsys):
    project, _, _ = imported
    assert main(["report", "--project", str(project), "--out", str(tmp_path / "r.docx")]) == 1
    assert "a report is .pdf, .png or .html" in capsys.readouterr().err


def test_associated_media_is_never_an_absolute_path(tmp_path):
    from engine.export.dwc import media_path

    project_folder = tmp_path / "survey"
    assert media_path(str(project_folder / "plates" / "a.jpg"), project_folder) == "plates/a.jpg"
    assert media_path(str(tmp_path / "elsewhere" / "b.jpg"), project_folder) == "b.jpg"
    assert media_path(str(project_folder / ".." / "c.jpg"), project_folder) == "c.jpg"
    assert media_path("/home/ana/private/d.jpg", None) == "d.jpg"


# ------------------------------------------------------------------ valid XML whatever the names
def _usable_file_name(name: str) -> bool:
    return "/" not in name and "\0" not in name and name not in (".", "..") and len(name.encode("utf-8")) < 150


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(project_name=st.text(min_size=1, max_size=30).filter(_usable_file_name),
       species=st.text(min_size=1, max_size=40), user=st.text(min_size=1, max_size=20).filter(str.strip),
       note=st.text(max_size=40))
def test_dwc_archive_is_valid_xml_and_rows_round_trip_whatever_the_names(imported, project_name, species, user,
                                                                         note):
    import shutil
    import tempfile

    from engine.export.dwc import _clean, write_dwca, xml_text
    from engine.export.project_csv import write_project_csv

    project, known, novel = imported
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / f"{project_name}.db"
        try:
            shutil.copy(project, copy)
        except OSError:
            return  # a name this file system refuses
        with open_project(copy) as p:
            p.annotate(p.specimen_id(known[2].specimen_id), "override", user=user, note=note,
                       taxonomy={"species": species})
            n = write_dwca(p, Path(d) / "a.zip")
            write_project_csv(p, Path(d) / "a.csv")
        with zipfile.ZipFile(Path(d) / "a.zip") as zf:
            ET.fromstring(zf.read("meta.xml"))
            eml = ET.fromstring(zf.read("eml.xml"))
            lines = zf.read("occurrence.txt").decode("utf-8").split("\n")
        with open(Path(d) / "a.csv", newline="", encoding="utf-8") as fh:
            csv_rows = {r["specimen_id"]: r for r in csv.DictReader(fh)}
    assert eml.find("dataset/title").text == xml_text(f"BIOSCAN Desktop project {project_name}")
    assert lines[0].split("\t") == DWC_COLUMNS and lines[-1] == ""
    rows = [dict(zip(DWC_COLUMNS, line.split("\t"))) for line in lines[1:-1]]
    assert len(rows) == n == len(known) + len(novel) and all(len(r) == len(DWC_COLUMNS) for r in rows)
    over = next(r for r in rows if r["catalogNumber"] == known[2].specimen_id)
    assert over["scientificName"] == _clean(species) and over["identifiedBy"] == _clean(user)
    if species == " ".join(species.split()) and species.isprintable():
        assert over["scientificName"] == species  # printable names pass unchanged
    reviewed = csv_rows[known[2].specimen_id]["reviewed_species"]
    assert reviewed == (("'" + species) if species.startswith(("=", "+", "-", "@", "\t", "\r")) else species)


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs (needs root); skipped where it cannot be mounted."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the kill tests cover partial files")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("argv,name", [(["export", "--format", "csv"], "out.csv"),
                                       (["export", "--format", "dwc"], "out.zip"),
                                       (["report"], "report.png")])
def test_a_full_disk_is_one_line_and_leaves_the_old_output(imported, small_disk, capsys, argv, name):
    import shutil

    project = imported[0]
    out = small_disk / name
    out.write_bytes(b"the old output\n")
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (shutil.disk_usage(small_disk).free - 2048))
    assert main(argv + ["--project", str(project), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bioscan: error: no space left on the disk for {out}"), err
    assert err[0].endswith("the old file is unchanged")
    assert out.read_bytes() == b"the old output\n"
    assert sorted(p.name for p in small_disk.iterdir()) == sorted([name, "filler"])  # no temp file left
    filler.unlink()
    assert main(argv + ["--project", str(project), "--out", str(out)]) == 0  # space again: it works
    assert out.stat().st_size > 100 and sorted(p.name for p in small_disk.iterdir()) == [name]


NASTY_NAMES = ["a$\\frac{b$", "$x^$", "\x00\x07\x1b[31m", "<script>alert(1)</script>", "%s %d {0} {}",
               "x" * 500, "שלום עולם", "🐜 \u202e reversed", "tab\tand\nnewline", "\\undefined $ $ $"]


@pytest.mark.parametrize("suffix", [".pdf", ".png", ".html"])
def test_report_draws_any_name_as_text(imported, tmp_path, suffix):
    import shutil

    from engine.report import write_report

    project, known, _ = imported
    copy = tmp_path / "$survey$ #1 ?%41 \x07.db"
    shutil.copy(project, copy)
    with open_project(copy) as p:
        for name, rec in zip(NASTY_NAMES, known):
            p.annotate(p.specimen_id(rec.specimen_id), "override", user=name, note=name,
                       taxonomy={"order": name, "family": name, "species": name})
        out = write_report(p, tmp_path / f"r{suffix}")
    assert out.stat().st_size > 2000 and sorted(q.name for q in tmp_path.iterdir() if "partial" in q.name) == []


def test_a_full_disk_during_library_build_add_keeps_the_old_library(small_disk, tiny_library, tiny_dna_pack,
                                                                    synthetic_split, tmp_path, capsys):
    import shutil

    lib = small_disk / "lib.db"
    shutil.copy(tiny_library, lib)
    old = lib.read_bytes()
    tsv = tmp_path / "more.tsv"
    write_tsv(tsv, synthetic_split[1])
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (shutil.disk_usage(small_disk).free - len(old) // 2))  # room for half a copy
    argv = ["library", "build", "--add", "--barcodes", str(tsv), "--out", str(lib), "--model", str(tiny_dna_pack),
            "--device", "cpu", "-q"]
    assert main(argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bioscan:")]
    assert len(err) == 1 and err[0].startswith(f"bioscan: error: no space left on the disk for {lib}"), err
    assert lib.read_bytes() == old and sorted(p.name for p in small_disk.iterdir()) == ["filler", "lib.db"]


# ------------------------------------------------------------------ provenance, reviews and flags
class _Pack:
    name, version = "test-image-model", "2.0.0"


class _PhotoEncoder:
    model_sha256 = "e" * 64
    precision = "int8"
    pack = _Pack()

    def embed(self, images, progress=None):
        return np.tile(np.eye(4, dtype=np.float32)[0], (len(images), 1))


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["specimen_id"]: r for r in csv.DictReader(fh)}


def _read_dwca(path: Path) -> dict[str, dict[str, str]]:
    with zipfile.ZipFile(path) as zf:
        lines = zf.read("occurrence.txt").decode("utf-8").split("\n")
    header = lines[0].split("\t")
    return {r["catalogNumber"]: r for r in (dict(zip(header, line.split("\t"))) for line in lines[1:] if line)}


@pytest.fixture(scope="module")
def reimported(tmp_path_factory, synthetic_split, tiny_library, tiny_dna_pack):
    """Run 1 imports barcodes (one specimen id in two files, naming different families); run 2 finds
    the same files unchanged and only photos new (two of specimens with barcodes, one of a trap), identified
    by a (fake) image model that calls every photo the first specimen's family, with no close reference
    below it (novel at genus): the issue's no-op re-import."""
    from engine.project import ImportSettings, import_folders
    from engine.records import Call, Match, RankCall

    _, known, _ = synthetic_split
    agree = known[0]
    disagree = next(k for k in known if k.taxonomy.family != agree.taxonomy.family)
    twice = next(k for k in known[1:] if k.taxonomy.family == agree.taxonomy.family and k is not disagree)
    other_family = next(k for k in known if k.taxonomy.family != twice.taxonomy.family and k is not disagree)

    class PhotoSaysFamilyOfFirst:
        encoder = _PhotoEncoder()

        def match(self, images, progress=None, embeddings=None):
            call = Call({r: RankCall(r, agree.taxonomy.get(r) if r in ("order", "family") else "", 0.8)
                         for r in ("order", "family", "genus", "species", "bin_uri")}, novel=True, novel_rank="genus")
            return [(call, [Match("IMG1", agree.taxonomy, 0.9)]) for _ in images]

    d = tmp_path_factory.mktemp("provenance")
    src = d / "in"
    src.mkdir()
    write_fasta(src / "plate.fasta", [agree, disagree, twice])
    write_fasta(src / "replate.fasta", [type(twice)(twice.specimen_id, other_family.sequence, "",
                                                     other_family.taxonomy)])
    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), device="cpu")
    project = d / "p.db"
    import_folders([src], project, settings)
    from tests.engine.test_bad_images import textured

    for name, seed in ((agree.specimen_id, 1), (disagree.specimen_id, 2), ("trap-photo-1", 3)):
        textured((64, 48), seed=seed).save(src / f"{name}.jpg")
    import_folders([src], project, settings, image_identifier=PhotoSaysFamilyOfFirst())
    return project, agree, disagree, twice


def test_a_no_op_reimport_leaves_the_dna_calls_with_the_dna_model(reimported, tmp_path, tiny_library):
    from engine.export.dwc import write_dwca
    from engine.export.project_csv import write_project_csv

    project, agree, disagree, twice = reimported
    with open_project(project, readonly=True) as p:
        latest, first = p.import_runs()[0], p.import_runs()[1]
        write_project_csv(p, tmp_path / "a.csv")
        write_dwca(p, tmp_path / "a.zip")
    assert [m["modality"] for m in latest["models"]] == ["image"]  # the re-import opened no DNA model
    dna_model = next(m for m in first["models"] if m["modality"] == "dna")
    rows, occ = _read_csv(tmp_path / "a.csv"), _read_dwca(tmp_path / "a.zip")
    dna_only = rows[twice.specimen_id]
    assert dna_only["modality"] == "dna" and dna_only["call_run"] == str(first["id"])
    assert dna_only["call_models"].startswith(f"{dna_model['name']} {dna_model['version']} (int8, sha256 "
                                              f"{dna_model['sha256'][:12]}")
    assert first["library_id"] in dna_only["call_library"] and Path(tiny_library).stem in dna_only["call_library"]
    by = occ[twice.specimen_id]["identifiedBy"]
    assert by.startswith(dna_model["name"]) and first["library_id"] in by and "test-image-model" not in by
    assert occ[twice.specimen_id]["dateIdentified"] <= latest["started_at"]
    fused = rows[agree.specimen_id]  # barcode (run 1) fused with the photo (run 2): both made the call
    assert fused["modality"] == "dna+image" and fused["call_run"] == f"{first['id']};{latest['id']}"
    assert dna_model["name"] in fused["call_models"] and "test-image-model 2.0.0" in fused["call_models"]
    assert "test-image-model 2.0.0" in occ[agree.specimen_id]["identifiedBy"]


def test_disagreement_and_conflict_flags_are_in_the_csv_and_the_archive(reimported, tmp_path):
    from engine.export.dwc import write_dwca
    from engine.export.project_csv import write_project_csv

    project, agree, disagree, twice = reimported
    with open_project(project, readonly=True) as p:
        stored = {k: p.specimen(k).specimen for k in (agree.specimen_id, disagree.specimen_id, twice.specimen_id)}
        write_project_csv(p, tmp_path / "a.csv")
        write_dwca(p, tmp_path / "a.zip")
    rows, occ = _read_csv(tmp_path / "a.csv"), _read_dwca(tmp_path / "a.zip")
    assert stored[disagree.specimen_id]["disagreement_rank"] == "family"  # the mix-up the photo shows
    assert stored[twice.specimen_id]["conflict_rank"] in ("order", "family")
    for key, s in stored.items():
        assert rows[key]["disagreement_rank"] == s["disagreement_rank"]
        assert rows[key]["conflict_rank"] == s["conflict_rank"]
    assert "photo and barcode disagree at family" in occ[disagree.specimen_id]["identificationRemarks"]
    assert "disagree" not in occ[agree.specimen_id]["identificationRemarks"]
    assert (f"two barcodes of this specimen disagree at {stored[twice.specimen_id]['conflict_rank']}"
            in occ[twice.specimen_id]["identificationRemarks"])


def test_override_names_are_checked_against_the_library(tiny_library):
    from engine.library import ReferenceLibrary
    from engine.taxonomy_check import LibraryTaxonomy, unknown_names

    lib = ReferenceLibrary.open(tiny_library)
    names = lib.taxon_names()
    family = sorted(names["family"])[0]
    typo = family[:-2] + family[-1] + family[-2]  # Synthidae0 -> Synthida0e
    assert unknown_names(lib, {"order": "Synthoptera", "family": family, "genus": sorted(names["genus"])[0]}) == []
    found = unknown_names(LibraryTaxonomy.of(lib), {"family": typo, "genus": "Genus0", "species": "Nova nova"})
    assert [(u.rank, u.name) for u in found] == [("family", typo), ("species", "Nova nova")]
    assert family in found[0].suggestions and found[0].message().startswith(f"{typo}: not a family in the library")
    beetles = LibraryTaxonomy({"family": {"Carabidae", "Apidae", "Formicidae"}})
    assert [u.message() for u in beetles.unknown({"family": "Carabidea"})] == [
        "Carabidea: not a family in the library; did you mean Carabidae?"]
    assert found[1].message() == "Nova nova: not a species in the library"
    wrong_rank = unknown_names(lib, {"family": "Genus0"})[0]
    assert wrong_rank.known_as == ["genus"] and "(it is a genus)" in wrong_rank.message()
    lib.close()


def test_an_unknown_override_name_and_notes_are_marked_in_both_exports(imported, tmp_path):
    import shutil

    from engine.export.dwc import write_dwca
    from engine.export.project_csv import write_project_csv

    project, known, _ = imported
    copy = tmp_path / "p.db"
    shutil.copy(project, copy)
    key, noted = known[3].specimen_id, known[4].specimen_id
    with open_project(copy) as p:
        sid = p.specimen_id(key)
        p.annotate(sid, "annotate", user="Bo", note="left leg missing")
        p.annotate(sid, "override", user="Dr. Ana", taxonomy={"family": "Carabidea"}, note="keyed out",
                   unverified_names={"family": "Carabidea"})
        p.annotate(p.specimen_id(noted), "annotate", user="Bo", note="re-photograph")
        with pytest.raises(ValueError):  # a mark must name a name of the override
            p.annotate(sid, "override", user="x", taxonomy={"family": "A"}, unverified_names={"family": "B"})
        write_project_csv(p, tmp_path / "a.csv")
        write_dwca(p, tmp_path / "a.zip")
    rows, occ = _read_csv(tmp_path / "a.csv"), _read_dwca(tmp_path / "a.zip")
    r = rows[key]
    assert (r["review"], r["reviewed_family"], r["reviewed_by"], r["unverified_names"]) == (
        "overridden", "Carabidea", "Dr. Ana", "family Carabidea")
    assert r["review_notes"].startswith("left leg missing (Bo, 20") and "keyed out (Dr. Ana, " in r["review_notes"]
    assert rows[noted]["review_notes"].startswith("re-photograph (Bo, ") and rows[noted]["unverified_names"] == ""
    o = occ[key]
    assert (o["family"], o["identifiedBy"], o["identificationVerificationStatus"]) == (
        "Carabidea", "Dr. Ana", "unverified name")
    assert "family Carabidea" in o["taxonRemarks"] and "left leg missing" in o["occurrenceRemarks"]
    assert occ[noted]["occurrenceRemarks"].startswith("re-photograph (Bo, ")
    assert occ[noted]["identificationVerificationStatus"] == "unverified" and occ[noted]["taxonRemarks"] == ""


def test_report_qc_mixups_and_conflicts_are_the_projects(reimported, tmp_path):
    from engine.report import collect, write_report

    project, agree, disagree, twice = reimported
    with open_project(project, readonly=True) as p:
        data = collect(p)
        specimens = {s["specimen_key"]: p.specimen(s["id"]) for s in p.iter_specimens()}
        write_report(p, tmp_path / "r.html")
        write_report(p, tmp_path / "r.pdf")
    flagged = Counter(f for d in specimens.values() for it in d.items if it["modality"] == "dna"
                      for f in (it["qc_flags"] or "").split(";") if f)
    assert {f: n for f, n, _ in data.qc_flags} == dict(flagged)
    mixed = sorted(k for k, d in specimens.items() if d.specimen["disagreement_rank"])
    conflicting = sorted(k for k, d in specimens.items() if d.specimen["conflict_rank"])
    assert mixed == [disagree.specimen_id] and conflicting == [twice.specimen_id]
    assert sorted(m.specimen_key for m in data.mixups) == mixed and data.n_mixups == 1
    assert data.mixups[0].rank == "family" and data.mixups[0].names == [disagree.taxonomy.family,
                                                                         agree.taxonomy.family]
    assert sorted(m.specimen_key for m in data.conflicts) == conflicting and len(data.conflicts[0].names) == 2
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Photo/barcode mix-ups (1)" in text and "Barcode conflicts (1)" in text
    assert disagree.specimen_id in text and twice.specimen_id in text
    novel_by = {k: d.specimen["call_modality"] for k, d in specimens.items() if d.specimen["status"] == "novel"}
    assert novel_by == {"trap-photo-1": "image"}  # the photo-only specimen's call has no close reference
    assert (data.n_novel, data.n_photo_novel, data.novel) == (0, 1, [])  # a photo alone is not novel
    assert "Novel specimens (0, flagged by their barcodes)" in text and "1 photo-only calls" in text

