"""`bioscan import` -> `bioscan export` (CSV, Darwin Core Archive) and `bioscan report`, through the CLI."""
from __future__ import annotations

import csv
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
    assert r0["identifiedBy"].startswith("BIOSCAN Desktop ") and r0["dateIdentified"][:2] == "20"
    assert r0["associatedSequences"] == f"known.tsv#{known[0].specimen_id}"
    assert r0["associatedMedia"] == f"in/{known[0].specimen_id}.jpg"  # relative to the project's folder
    rn = by_cat[novel[1].specimen_id]
    assert (rn["taxonRank"], rn["scientificName"], rn["identificationQualifier"]) == (
        "genus", novel[1].taxonomy.genus, "aff.")
    assert "possibly new at rank species" in rn["identificationRemarks"]
    ro = by_cat[known[1].specimen_id]
    assert (ro["scientificName"], ro["identifiedBy"], ro["specificEpithet"]) == ("Genus9 species9", "Dr. Ana", "species9")
    assert ro["identificationVerificationStatus"] == "verified by expert"
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
        assert "Synthoptera" in text and f"Novel specimens ({len(novel)})" in text
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
