"""Batch import of folders into a project: pairing, identification, idempotence, cancel, kill -9 and resume."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.project.importer import ImportSettings, import_folders
from engine.progress import Cancelled
from engine.project import SpecimenFilter, open_project
from tests.synthetic import make_barcodes, write_fasta, write_tsv

REPO = Path(__file__).resolve().parents[2]


def photo(path: Path, size=(64, 48), seed: int = 0) -> Path:
    """A photo-like picture (a blank one is refused as showing no specimen)."""
    from tests.engine.test_bad_images import textured

    path.parent.mkdir(parents=True, exist_ok=True)
    textured(size, seed=seed).save(path)
    return path


@pytest.fixture
def bulk(tmp_path, synthetic_split):
    """A lab folder: a BIOSCAN-5M table of known-species queries, a FASTA of novel-species queries
    keyed by sampleid, a metadata table linking sampleids to processids, and photos named in
    each of the ways the pairing rules cover."""
    _, known, novel = synthetic_split
    root = tmp_path / "bulk sample Ä"
    (root / "dna").mkdir(parents=True)
    write_tsv(root / "dna" / "plate1.tsv", known)
    fasta_recs = [type(r)(f"SAMP-{r.specimen_id}", r.sequence, "", r.taxonomy) for r in novel]
    write_fasta(root / "dna" / "plate2.fasta", fasta_recs)
    with open(root / "metadata.tsv", "w", encoding="utf-8") as fh:
        fh.write("processid\tsampleid\tcountry\n")
        for r in novel:
            fh.write(f"{r.specimen_id}\tSAMP-{r.specimen_id}\tCanada\n")
    photo(root / "photos" / f"{known[0].specimen_id}.jpg")  # (a) stem = processid
    photo(root / "photos" / f"{known[1].specimen_id}_dorsal.png")  # (c) prefix before a separator
    photo(root / "photos" / known[2].specimen_id / "lateral.tif")  # (b) folder per specimen
    photo(root / "photos" / f"SAMP-{novel[0].specimen_id}.jpg")  # alias: named by sampleid
    photo(root / "photos" / "unpaired specimen 7.jpg")  # (d) photo-only specimen
    (root / "notes.docx").write_bytes(b"not an input")
    return root, known, novel


def run_import(root, project, tiny_library, tiny_dna_pack, **kw):
    settings = kw.pop("settings", ImportSettings(batch_size=7, device="cpu"))
    settings = dataclasses.replace(settings, library=str(tiny_library), dna_model=str(tiny_dna_pack))
    return import_folders([root], project, settings, **kw)


def test_import_pairs_and_identifies(bulk, tmp_path, tiny_library, tiny_dna_pack):
    root, known, novel = bulk
    rep = run_import(root, tmp_path / "p.db", tiny_library, tiny_dna_pack)
    assert rep.status == "completed"
    assert rep.files_ignored == 1  # notes.docx
    with open_project(tmp_path / "p.db", readonly=True) as p:
        assert p.count_specimens() == len(known) + len(novel) + 1  # + the unpaired photo
        # every known query called to its species, with its top match's identity
        for rec in known:
            d = p.specimen(rec.specimen_id)
            assert d.specimen["status"] == "ok"
            assert d.specimen["species"] == rec.taxonomy.species
            dna_item = next(i for i in d.items if i["modality"] == "dna")
            assert d.matches[dna_item["id"]][0]["identity"] > 0.97
            assert d.calls[dna_item["id"]]["species"][0] == rec.taxonomy.species
            assert d.items[0]["given"]["species"] == rec.taxonomy.species  # taxonomy written in the table
        # novel queries: FASTA ids were sampleids, the metadata table made them processids
        for rec in novel:
            d = p.specimen(rec.specimen_id)
            assert d.specimen["status"] == "novel" and d.specimen["novel_rank"] == "species"
            assert d.specimen["genus"] == rec.taxonomy.genus
            assert d.specimen["sampleid"] == f"SAMP-{rec.specimen_id}"
            assert d.specimen["metadata"]["country"] == "Canada"
            assert p.specimen(f"SAMP-{rec.specimen_id}").specimen["id"] == d.specimen["id"]
        for rec in (known[0], known[1], known[2], novel[0]):
            d = p.specimen(rec.specimen_id)
            assert d.specimen["modalities"] == "dna+photo", rec.specimen_id
            ph = next(i for i in d.items if i["modality"] == "photo")
            assert (ph["width"], ph["height"], ph["status"]) == (64, 48, "pending")
        lone = p.specimen("unpaired specimen 7")
        assert lone.specimen["status"] == "pending" and lone.specimen["modalities"] == "photo"
        # embeddings are stored, one per barcode, unit length
        ids, mat = p.embeddings("dna")
        assert len(ids) == len(known) + len(novel) and abs(float((mat[0] ** 2).sum()) - 1.0) < 0.01
        run = p.import_runs()[0]
        assert run["status"] == "completed" and run["app_version"]
        assert run["models"][0]["sha256"] and run["library_id"] and len(run["library_sha256"]) == 64
        assert run["counts"]["ok"] == len(known) and run["counts"]["novel"] == len(novel)
        files = p.files()
        assert all(len(f["sha256"]) == 64 and f["done"] == 1 for f in files)


def test_reimport_is_idempotent_and_reprocesses_changed_files(bulk, tmp_path, tiny_library, tiny_dna_pack):
    root, known, novel = bulk
    project = tmp_path / "p.db"
    run_import(root, project, tiny_library, tiny_dna_pack)
    with open_project(project, readonly=True) as p:
        before = p.list_specimens(limit=1000)
        n_items = p.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        sid = p.specimen_id(known[3].specimen_id)
    rep = run_import(root, project, tiny_library, tiny_dna_pack)
    assert rep.files_processed == 0 and rep.files_unchanged == 8 and rep.items == 0
    with open_project(project) as p:
        assert [r["specimen_key"] for r in p.list_specimens(limit=1000)] == [r["specimen_key"] for r in before]
        assert p.conn.execute("SELECT count(*) FROM items").fetchone()[0] == n_items
        p.annotate(sid, "accept", user="tester")
    # touching a file without changing it: its sha256 says unchanged
    os.utime(root / "dna" / "plate2.fasta", ns=(1, 1))
    assert run_import(root, project, tiny_library, tiny_dna_pack).files_unchanged == 8
    # change one sequence of plate1: only that file is re-processed, the accepted call is now stale
    changed = [type(r)(r.specimen_id, r.sequence, "", r.taxonomy) for r in known]
    other = novel[0]
    changed[3] = type(other)(known[3].specimen_id, other.sequence, "", known[3].taxonomy)
    write_tsv(root / "dna" / "plate1.tsv", changed)
    rep = run_import(root, project, tiny_library, tiny_dna_pack)
    assert rep.files_processed == 1 and rep.items == len(known)
    with open_project(project, readonly=True) as p:
        assert p.conn.execute("SELECT count(*) FROM items").fetchone()[0] == n_items
        d = p.specimen(sid)
        assert d.specimen["status"] == "novel" and d.specimen["review"] == "stale"
        assert len(d.annotations) == 1
        assert p.conn.execute("SELECT count(*) FROM specimens").fetchone()[0] == len(before)


def test_cancel_then_resume_loses_nothing(bulk, tmp_path, tiny_library, tiny_dna_pack):
    root, known, novel = bulk
    project = tmp_path / "p.db"
    start = {}

    def cancel_after_two_batches(done, total, message):
        if message == "identifying barcodes":  # done counts committed items (metadata rows first)
            if done - start.setdefault(message, done) >= 14:
                raise Cancelled()

    with pytest.raises(Cancelled):
        run_import(root, project, tiny_library, tiny_dna_pack, progress=cancel_after_two_batches)
    with open_project(project, readonly=True) as p:
        assert p.import_runs()[0]["status"] == "cancelled"
        assert p.count_specimens() == 14  # two committed batches of 7
    rep = run_import(root, project, tiny_library, tiny_dna_pack)
    assert rep.status == "completed"
    with open_project(project, readonly=True) as p:
        assert p.count_specimens() == len(known) + len(novel) + 1
        assert p.count_specimens(SpecimenFilter(status="error")) == 0
        dup = p.conn.execute("SELECT count(*) FROM (SELECT file_id, record_key FROM items "
                             "GROUP BY 1, 2 HAVING count(*) > 1)").fetchone()[0]
        assert dup == 0


def test_second_import_adopts_photos_imported_first(tmp_path, synthetic_split, tiny_library, tiny_dna_pack):
    _, known, _ = synthetic_split
    photos, dna = tmp_path / "photos", tmp_path / "dna"
    photo(photos / f"{known[0].specimen_id}_ventral.jpg")
    dna.mkdir()
    write_fasta(dna / "x.fasta", known[:3])
    project = tmp_path / "p.db"
    run_import(photos, project, tiny_library, tiny_dna_pack)
    run_import(dna, project, tiny_library, tiny_dna_pack)
    with open_project(project, readonly=True) as p:
        assert p.count_specimens() == 3
        assert p.specimen(known[0].specimen_id).specimen["modalities"] == "dna+photo"


def test_image_identifier_hook_is_used_for_photo_only_specimens(tmp_path, synthetic_split, tiny_library,
                                                                tiny_dna_pack):
    from engine.records import Call, Match, RankCall, Taxonomy

    class Encoder:
        model_sha256 = "f" * 64
        precision = "int8"

        def embed(self, images, progress=None):
            return np.tile(np.eye(4, dtype=np.float32)[1], (len(images), 1))

    class FixedImageIdentifier:  # stands in for engine.identify_image.ImageIdentifier
        def __init__(self):
            self.seen = []
            self.encoder = Encoder()

        def match(self, images, progress=None, embeddings=None):
            self.seen.extend(im.size for im in images)
            tax = Taxonomy("Hymenoptera", "Apidae", "", "Bombus", "Bombus sp", "")
            call = Call({r: RankCall(r, tax.get(r) if r in ("order", "family") else "", 0.8)
                         for r in ("order", "family", "genus", "species", "bin_uri")})
            return [(call, [Match("IMG1", tax, 0.91)]) for _ in images]

    photo(tmp_path / "in" / "bee.jpg", size=(30, 20))
    ident = FixedImageIdentifier()
    import_folders([tmp_path / "in"], tmp_path / "p.db", image_identifier=ident)
    assert ident.seen == [(30, 20)]
    with open_project(tmp_path / "p.db", readonly=True) as p:
        s = p.specimen("bee").specimen
        assert (s["status"], s["call_modality"], s["family"], s["top_similarity"]) == ("ok", "image", "Apidae", 0.91)
        model = p.import_runs()[0]["models"][0]
        assert (model["modality"], model["sha256"], model["precision"]) == ("image", "f" * 64, "int8")
        ids, mat = p.embeddings("photo")
        assert ids == [p.specimen_id("bee")] and mat.tolist() == [[0.0, 1.0, 0.0, 0.0]]


def test_barcode_and_photo_of_a_specimen_get_one_fused_call(tmp_path, synthetic_split, tiny_library, tiny_dna_pack):
    from engine.records import Call, Match, RankCall, Taxonomy

    _, known, _ = synthetic_split
    agree, disagree = known[0], next(k for k in known if k.taxonomy.family != known[0].taxonomy.family)

    class Encoder:
        model_sha256 = "e" * 64
        precision = "int8"

        def embed(self, images, progress=None):
            return np.tile(np.eye(4, dtype=np.float32)[0], (len(images), 1))

    class PhotoSaysFamilyOfFirst:  # every photo is called the family of the first specimen, at 0.8
        encoder = Encoder()

        def match(self, images, progress=None, embeddings=None):
            tax = agree.taxonomy
            call = Call({r: RankCall(r, tax.get(r) if r in ("order", "family") else "", 0.8)
                         for r in ("order", "family", "genus", "species", "bin_uri")})
            return [(call, [Match("IMG1", tax, 0.9)]) for _ in images]

    src = tmp_path / "in"
    src.mkdir()
    write_fasta(src / "plate.fasta", [agree, disagree])
    photo(src / f"{agree.specimen_id}.jpg")
    photo(src / f"{disagree.specimen_id}.jpg")
    run_import(src, tmp_path / "p.db", tiny_library, tiny_dna_pack, image_identifier=PhotoSaysFamilyOfFirst())
    with open_project(tmp_path / "p.db", readonly=True) as p:
        a = p.specimen(agree.specimen_id)
        d = p.specimen(disagree.specimen_id)
        dna_family = {s.specimen["specimen_key"]: next(
            c for c in s.calls[next(i["id"] for i in s.items if i["modality"] == "dna")].items() if c[0] == "family")[1]
            for s in (a, d)}
    a, d = a.specimen, d.specimen
    assert a["modalities"] == d["modalities"] == "dna+photo"
    assert a["call_modality"] == d["call_modality"] == "dna+image"
    # the barcode's names stand; agreement raises the family confidence (noisy-OR), disagreement lowers it
    assert (a["family"], d["family"]) == (agree.taxonomy.family, disagree.taxonomy.family)
    p_dna_a, p_dna_d = dna_family[a["specimen_key"]][1], dna_family[d["specimen_key"]][1]
    assert a["family_confidence"] == pytest.approx(1 - (1 - p_dna_a) * 0.2)
    assert d["family_confidence"] == pytest.approx(p_dna_d * 0.2 / (p_dna_d * 0.2 + (1 - p_dna_d) * 0.8))
    assert (a["disagreement_rank"], d["disagreement_rank"]) == ("", "family")


def synthetic_plate(tmp_path: Path, records_per_species: int, seed: int, genera: int = 2, species: int = 2,
                    plates: int = 1):
    """A folder of BIOSCAN-5M style tables with genera x species x records_per_species records."""
    recs = make_barcodes(genera=genera, species_per_genus=species, records_per_species=records_per_species, seed=seed)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(plates):
        write_tsv(src / f"plate{i}.tsv", recs[i::plates])
    return src, recs


def cli_import(src: Path, project: Path, tiny_library, tiny_dna_pack) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "import", str(src), "--project", str(project), "--library",
            str(tiny_library), "--model", str(tiny_dna_pack), "--device", "cpu", "--batch-size", "50", "-q"]


def _count_committed(project: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{project}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM items").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, tiny_library, tiny_dna_pack):
    src, recs = synthetic_plate(tmp_path, records_per_species=300, seed=5)  # 1200 records
    project = tmp_path / "p.db"
    cmd = cli_import(src, project, tiny_library, tiny_dna_pack)
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and _count_committed(project) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    with open_project(project, readonly=True) as p:
        run = p.import_runs()[0]
        assert run["status"] == "interrupted" and run["finished_at"]
        assert 200 <= p.count_specimens() < len(recs)
        assert run["counts"]["ok"] + run["counts"]["novel"] == p.count_specimens()


def test_sigkill_at_random_points_then_resume(tmp_path, tiny_library, tiny_dna_pack):
    """kill -9 the CLI import several times mid-run; the final resume has every record exactly once."""
    src, recs = synthetic_plate(tmp_path, records_per_species=250, seed=7, genera=4, species=3, plates=3)  # 3000
    for i in range(12):
        photo(src / "photos" / f"{recs[i].specimen_id}.jpg", seed=i)
    project = tmp_path / "p.db"
    cmd = cli_import(src, project, tiny_library, tiny_dna_pack)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(1234)
    kills = 0
    for target in sorted(rng.sample(range(100, 2900), 3)):
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _count_committed(project) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode()
        proc.stderr.close()
    assert kills >= 2
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open_project(project, readonly=True) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = [r[0] for r in p.conn.execute("SELECT record_key FROM items WHERE modality = 'dna'")]
        assert sorted(keys) == sorted(r.specimen_id for r in recs)  # every record exactly once
        assert p.count_specimens() == len(recs)
        assert p.count_specimens(SpecimenFilter(status=["ok", "novel"])) == len(recs)
        # each has its full results: 5 per-rank calls and stored matches and an embedding
        assert p.conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 5 * len(recs)
        assert p.conn.execute("SELECT count(DISTINCT item_id) FROM matches").fetchone()[0] == len(recs)
        assert p.conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == len(recs)
        assert p.count_specimens(SpecimenFilter(modality="photo")) == 12
        statuses = [r["status"] for r in p.import_runs()]
        assert statuses[0] == "completed" and statuses.count("interrupted") == kills
