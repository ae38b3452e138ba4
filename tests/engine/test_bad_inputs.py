"""A corpus of bad inputs: each becomes an error item with its specific message, and the run completes."""
from __future__ import annotations

import io
import os
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.project.importer import ImportSettings, import_folders
from engine.project import ProjectError, SpecimenFilter, open_project
from tests.engine.test_importer import synthetic_plate
from tests.engine.test_bad_images import textured
from tests.synthetic import write_fasta, write_tsv

SETTINGS = ImportSettings(batch_size=16, metadata_batch_size=3, device="cpu")


def jpeg_bytes(size=(80, 60), exif_orientation: int | None = None) -> bytes:
    img = textured(size)  # a photo-like picture: a blank one is refused as showing no specimen
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", exif=exif.tobytes())
    else:
        img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def corpus(tmp_path, synthetic_split):
    _, known, _ = synthetic_split
    d = tmp_path / "bad inputs"
    d.mkdir()
    # photos
    (d / "corrupt.jpg").write_bytes(os.urandom(3000))
    (d / "truncated.jpg").write_bytes(jpeg_bytes((400, 300))[:1500])
    (d / "zero.png").write_bytes(b"")
    tif = io.BytesIO()
    Image.new("RGB", (60, 60), (10, 200, 30)).save(tif, "TIFF", compression="tiff_lzw")
    damaged = bytearray(tif.getvalue())
    damaged[10:200] = b"\x5a" * 190  # valid header and tags, LZW data that cannot decode
    (d / "unreadable.tif").write_bytes(bytes(damaged))
    ramp = Image.new("I;16", (40, 30))
    ramp.putdata([(i * 50) % 65536 for i in range(40 * 30)])
    ramp.save(d / "sixteen bit.tif")
    pages = [textured((40, 30), seed=i) for i in range(2)]
    pages[0].save(d / "multipage.tiff", save_all=True, append_images=pages[1:])
    (d / "rotated.jpg").write_bytes(jpeg_bytes((40, 20), exif_orientation=6))
    (d / "Ämeise nr 1 (Kopie).jpg").write_bytes(jpeg_bytes())
    # barcode files
    (d / "empty.fasta").write_bytes(b"")
    (d / "empty.tsv").write_bytes(b"")
    (d / "binary.fasta").write_bytes(b"\x00\x01\x02" * 100)
    (d / "protein.fasta").write_text(">prot1\n" + "MKVLAAGIVGLLLAEEFQPRSTW" * 10 + "\n")
    noise = "".join(np.random.default_rng(4).choice(list("ATCG"), p=[0.3, 0.4, 0.15, 0.15], size=658))
    (d / "not coi.fasta").write_text(">noise1\n" + noise + "\n")  # DNA, but no reading frame, no match
    (d / "huge line.fasta").write_text(">huge1\n" + "ACGT" * 12_500_000 + "\n")  # 50 MB, one line
    (d / "dupes.fasta").write_text(f">{known[0].specimen_id}\n{known[0].sequence}\n"
                                   f">{known[0].specimen_id}\n{known[1].sequence}\n")
    write_tsv(d / "rows.tsv", known[2:5])
    with open(d / "rows.tsv", "a", encoding="utf-8") as fh:
        fh.write("BROKEN-1\tonly\tthree\n")
    write_fasta(d / "ünïcödé barcodes.fasta", known[5:7])
    (d / "nonsense.csv").write_text("alpha,beta\n1,2\n")
    (d / "meta data.tsv").write_text("processid\tsampleid\tcountry\n" + "".join(
        f"M{i}\tMS{i}\tPeru\n" for i in range(7)) + "M7\tbroken\n")  # 7 good rows, 1 malformed
    (d / "gone.fasta").symlink_to(d / "no such target.fasta")  # unreadable: a broken link
    (d / "vanishing.jpg").write_bytes(jpeg_bytes())
    with open(os.fsencode(d) + b"/latin1 \xe9t\xe9.jpg", "wb") as fh:  # a name that is not UTF-8
        fh.write(jpeg_bytes())
    return d


def test_bad_inputs_become_specific_error_rows(corpus, tmp_path, tiny_library, tiny_dna_pack, synthetic_split):
    def delete_a_photo_mid_run(done, total, message):
        if message == "identifying barcodes" and (corpus / "vanishing.jpg").exists():
            (corpus / "vanishing.jpg").unlink()

    settings = dataclasses.replace(SETTINGS, library=str(tiny_library), dna_model=str(tiny_dna_pack))
    rep = import_folders([corpus], tmp_path / "p.db", settings, progress=delete_a_photo_mid_run)
    assert rep.status == "completed"
    with open_project(tmp_path / "p.db", readonly=True) as p:
        errors = {Path(e["path"]).name + (f"#{e['record_key']}" if e["record_key"] else ""): e["error"]
                  for e in p.item_errors()}
        expected = {
            "corrupt.jpg": "not an image Pillow can read",
            "truncated.jpg": "truncated or damaged image",
            "zero.png": "the image file is empty (0 bytes)",
            "unreadable.tif": "unreadable image",
            "empty.fasta": "the file is empty",
            "empty.tsv": "the file is empty",
            "binary.fasta": "binary data",
            "protein.fasta#prot1": "QC: not a DNA sequence",
            "not coi.fasta#noise1": "QC: no reading frame",
            "huge line.fasta#huge1": "QC: 50,000,000 bp: longer than any COI barcode (max 10,000 bp)",
            f"dupes.fasta#{make_key(corpus)}#2": "duplicate FASTA id",
            "rows.tsv#rows:line5": "line 5: malformed row: expected 7 fields, found 3",
            "nonsense.csv": "no recognised columns",
            "gone.fasta": "disappeared during the import (or is a broken link)",
            "vanishing.jpg": "cannot read file",
        }
        for name, message in expected.items():
            assert name in errors, f"{name}: no error row (errors: {sorted(errors)})"
            assert message in errors[name], (name, errors[name])
        assert len(errors) == len(expected)
        # good files next to the bad ones were imported
        good = {s["specimen_key"]: s for s in p.list_specimens(SpecimenFilter(status=["ok", "novel", "pending"]),
                                                                limit=100)}
        known = synthetic_split[1]
        assert "Ämeise nr 1 (Kopie)" in good and "sixteen bit" in good and "latin1 \\xe9t\\xe9" in good
        assert {r.specimen_id for r in known[2:7]} <= set(good)  # rows.tsv's good rows, the unicode FASTA
        meta = next(f for f in p.files() if f["name"] == "meta data.tsv")
        assert (meta["status"], meta["records"], meta["done"]) == ("ok", 7, 1)  # streamed in chunks of 3
        assert meta["error"] == "1 malformed rows skipped (line 9: malformed row: expected 3 fields, found 2)"
        rotated = p.specimen("rotated").items[0]
        assert (rotated["width"], rotated["height"], rotated["exif_orientation"]) == (20, 40, 6)
        assert p.specimen("multipage").items[0]["frames"] == 2
        assert p.specimen("sixteen bit").items[0]["image_mode"] == "I;16"
        counts = p.status_counts(rep.run_id)
        assert counts == rep.counts
        assert counts["error"] == len(expected) - 1  # the duplicate id joins its good twin's specimen
        assert p.specimen(make_key(corpus)).specimen["n_errors"] == 0  # "X#2" is its own error specimen


def make_key(corpus: Path) -> str:
    return (corpus / "dupes.fasta").read_text().split()[0][1:]


def test_full_disk_stops_cleanly_and_resumes(tmp_path, tiny_library, tiny_dna_pack):
    src, recs = synthetic_plate(tmp_path, records_per_species=150, seed=3)  # 600 records
    project = tmp_path / "p.db"
    p = open_project(project, create=True)
    pages = p.conn.execute("PRAGMA page_count").fetchone()[0]
    p.conn.execute(f"PRAGMA max_page_count = {pages + 60}")  # the "disk" fills after a few batches
    with pytest.raises(ProjectError, match="disk is full.*run the import again to resume"):
        import_folders([src], p, ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack),
                                                batch_size=50, device="cpu"))
    p.close()
    with open_project(project, readonly=True) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = p.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        assert 0 < stored < len(recs) and stored % 50 == 0  # whole batches only
        assert p.conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 5 * stored
    rep = import_folders([src], project, ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack),
                                                        batch_size=50, device="cpu"))
    assert rep.status == "completed" and rep.items == len(recs) - stored
    with open_project(project, readonly=True) as p:
        assert p.count_specimens() == len(recs)
        assert p.count_specimens(SpecimenFilter(status="error")) == 0
