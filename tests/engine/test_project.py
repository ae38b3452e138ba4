"""The project database's read API, annotations and schema handling (no model needed)."""
from __future__ import annotations

import random
import sqlite3
from collections import Counter

import numpy as np
import pytest

from engine.project import SCHEMA_VERSION, ProjectError, SpecimenFilter, TaxonNode, open_project
from engine.project.writer import ItemResult, ProjectWriter
from engine.records import RANKS, BarcodeQC, Call, Match, RankCall, Taxonomy

ORDERS = {"Diptera": ["Cecidomyiidae", "Chironomidae"], "Hymenoptera": ["Apidae", "Formicidae", "Braconidae"],
          "Coleoptera": ["Carabidae"]}


def make_call(tax: Taxonomy, conf: float, novel: bool = False) -> Call:
    return Call({r: RankCall(r, "" if (novel and r in ("species", "bin_uri")) else tax.get(r), conf) for r in RANKS},
                novel=novel, novel_rank="species" if novel else "")


def random_taxa(n: int, seed: int = 0) -> list[tuple[Taxonomy, float, bool]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        order = rng.choice(sorted(ORDERS))
        family = rng.choice(ORDERS[order])
        genus = f"{family[:4]}genus{rng.randrange(3)}"
        tax = Taxonomy(order, family, "", genus, f"{genus} sp{rng.randrange(2)}", f"BOLD:A{i:05d}")
        out.append((tax, round(rng.uniform(0.3, 1.0), 3), rng.random() < 0.2))
    return out


@pytest.fixture
def project(tmp_path):
    """A project of 300 DNA specimens with random calls (20% novel), 10 errors and 5 photo-only ones."""
    p = open_project(tmp_path / "p.db", create=True)
    w = ProjectWriter(p)
    run = w.begin_run({"app_version": "test", "settings": {"batch_size": 50}})
    fid = w.register_file(str(tmp_path / "plate.tsv"), "barcodes", 100, 1, "a" * 64, run)
    photo_fid = w.register_file(str(tmp_path / "x.jpg"), "photo", 10, 1, "b" * 64, run)
    taxa = random_taxa(300)
    items = []
    for i, (tax, conf, novel) in enumerate(taxa):
        call = make_call(tax, conf, novel)
        items.append(ItemResult(fid, f"S{i:04d}", f"S{i:04d}", "dna", "novel" if novel else "ok",
                                processid=f"S{i:04d}", sampleid=f"SAMP{i:04d}", aliases={f"SAMP{i:04d}": "sampleid"},
                                qc=BarcodeQC("ACGT" * 160, 640, 640, 0.0), call=call, call_modality="dna",
                                matches=[Match(f"REF{i}", tax, 0.99, 0.985), Match("REFX", tax, 0.9, 0.9)],
                                embedding=np.eye(8, dtype=np.float32)[i % 8], model_sha256="m" * 64))
    items += [ItemResult(fid, f"E{i}", f"E{i}", "dna", "error", error=f"QC: too short: {i} unambiguous bases")
              for i in range(10)]
    w.write_batch(run, items[:150], [])
    w.write_batch(run, items[150:], [fid])
    for i in range(5):
        w.write_batch(run, [ItemResult(photo_fid if i == 0 else w.register_file(
            str(tmp_path / f"p{i}.jpg"), "photo", 1, 1, "c", run), "", f"P{i}", "photo", "pending",
            photo={"width": 10, "height": 8})], [])
    w.finish_run(run, "completed", p.status_counts(run))
    p.taxa = taxa
    yield p
    p.close()


def test_list_filters_sorts_and_pages_in_sql(project):
    taxa = project.taxa
    assert project.count_specimens() == 315
    assert project.status_counts() == {"ok": sum(not n for _, _, n in taxa), "novel": sum(n for _, _, n in taxa),
                                       "error": 10, "pending": 5}
    flt = SpecimenFilter(taxon={"order": "Hymenoptera"}, status=["ok", "novel"])
    want = sorted(((c, f"S{i:04d}") for i, (t, c, _) in enumerate(taxa) if t.order == "Hymenoptera"),
                  key=lambda x: (-x[0], -int(x[1][1:])))
    assert project.count_specimens(flt) == len(want)
    pages = [project.list_specimens(flt, sort="confidence", descending=True, offset=o, limit=25)
             for o in range(0, len(want), 25)]
    got = [(r["confidence"], r["specimen_key"]) for page in pages for r in page]
    assert got == want
    assert project.count_specimens(SpecimenFilter(search="samp0012")) == 1
    assert project.count_specimens(SpecimenFilter(has_errors=True)) == 10
    assert project.count_specimens(SpecimenFilter(modality="photo")) == 5
    assert project.count_specimens(SpecimenFilter(novel=True)) == sum(n for _, _, n in taxa)
    confident = sum(c >= 0.9 for _, c, _ in taxa)
    assert project.count_specimens(SpecimenFilter(min_confidence=0.9)) == confident
    assert project.count_specimens(SpecimenFilter(max_confidence=0.9)) == 315 - confident  # + uncalled ones
    picked = [r["id"] for r in project.list_specimens(limit=40)][::3]
    assert [r["id"] for r in project.list_specimens(SpecimenFilter(ids=picked))] == picked
    with pytest.raises(ValueError, match="cannot sort"):
        project.list_specimens(sort="id; DROP TABLE specimens")


def test_list_queries_use_indexes(project):
    where, args = SpecimenFilter(taxon={"family": "Apidae"}).where()
    plan = " ".join(r[-1] for r in project.conn.execute(
        f"EXPLAIN QUERY PLAN SELECT * FROM specimens{where} ORDER BY final_species LIMIT 50", args))
    assert "USING INDEX" in plan and "SCAN specimens" not in plan.replace("USING INDEX", "")


def test_taxonomy_tree_counts(project):
    taxa = project.taxa
    tree = project.taxonomy_tree(SpecimenFilter(status=["ok", "novel"]))
    assert tree.count == 300
    assert {n.name: n.count for n in tree.children} == Counter(t.order for t, _, _ in taxa)
    dip = next(n for n in tree.children if n.name == "Diptera")
    assert {f.name: f.count for f in dip.children} == Counter(t.family for t, _, _ in taxa if t.order == "Diptera")
    species = Counter(t.species for t, _, n in taxa if t.order == "Diptera" and not n)

    def leaves(node: TaxonNode):
        return [node] if not node.children else [x for c in node.children for x in leaves(c)]

    named = Counter()
    for leaf in leaves(dip):
        if leaf.name:
            named[leaf.name] += leaf.count
    assert named == species  # novel specimens have no species call


def test_specimen_detail_by_id_key_and_alias(project):
    d = project.specimen("SAMP0007")
    assert d.specimen["specimen_key"] == "S0007"
    tax = project.taxa[7][0]
    (item,) = d.items
    assert item["path"].endswith("plate.tsv") and item["sequence_length"] == 640 and item["file_size"] == 100
    assert d.calls[item["id"]]["family"] == (tax.family, project.taxa[7][1])
    assert [m["record_id"] for m in d.matches[item["id"]]] == ["REF7", "REFX"]
    assert d.matches[item["id"]][0]["identity"] == pytest.approx(0.985)
    assert project.specimen(d.specimen["id"]).specimen["specimen_key"] == "S0007"
    with pytest.raises(ProjectError, match="no specimen"):
        project.specimen("nope")
    ids, mat = project.embeddings("dna")
    assert len(ids) == 300 and mat.shape == (300, 8) and mat[3, 3] == 1.0


def test_annotations_never_touch_the_machine_call(project, tmp_path):
    sid = project.specimen_id("S0001")
    machine = project.specimen(sid).specimen
    project.annotate(sid, "annotate", user="ana", note="leg missing")
    assert project.specimen(sid).specimen["review"] == ""
    project.annotate(sid, "override", user="ana", taxonomy={"genus": "Fixgenus", "species": "Fixgenus fixus"})
    s = project.specimen(sid).specimen
    assert [s[r] for r in RANKS] == [machine[r] for r in RANKS]  # machine call unchanged
    assert (s["review"], s["final_order"], s["final_family"], s["final_genus"], s["final_species"],
            s["final_bin_uri"]) == ("overridden", machine["order"], machine["family"], "Fixgenus",
                                    "Fixgenus fixus", "")
    assert project.count_specimens(SpecimenFilter(taxon={"genus": "Fixgenus"})) == 1
    assert project.taxonomy_tree(machine=True).count == project.taxonomy_tree().count
    project.annotate(sid, "accept", user="bo")
    s = project.specimen(sid).specimen
    assert s["review"] == "accepted" and s["final_species"] == machine["species"]
    notes = project.annotations(sid)
    assert [(a["action"], a["user"]) for a in notes] == [("annotate", "ana"), ("override", "ana"), ("accept", "bo")]
    assert notes[2]["machine_call"]["species"] == machine["species"] and notes[0]["note"] == "leg missing"
    # a new machine call makes the acceptance stale; the override history stays
    w = ProjectWriter(project)
    run = w.begin_run({})
    other = Taxonomy("Coleoptera", "Carabidae", "", "Carabus", "Carabus x", "BOLD:ZZZ")
    w.write_batch(run, [ItemResult(project.specimen(sid).items[0]["file_id"], "S0001", "S0001", "dna", "ok",
                                   call=make_call(other, 0.95), call_modality="dna")])
    s = project.specimen(sid).specimen
    assert (s["species"], s["review"], s["final_species"]) == ("Carabus x", "stale", "Carabus x")
    for bad in (dict(action="delete", user="x"), dict(action="accept", user=" "),
                dict(action="override", user="x", taxonomy={})):
        with pytest.raises(ValueError):
            project.annotate(sid, **bad)


def test_call_provenance_reviews_and_qc_flags_for_exports(project):
    first = project.import_runs()[0]["id"]
    sid, again, photo_only = (project.specimen_id(k) for k in ("S0001", "S0002", "P1"))
    w = ProjectWriter(project)
    run = w.begin_run({"models": [{"modality": "dna", "name": "dna-m", "version": "2"},
                                  {"modality": "image", "name": "img-m", "version": "1"}], "library_id": "L2"})
    item = project.specimen(again).items[0]
    tax, conf, novel = project.taxa[2]
    w.write_batch(run, [ItemResult(item["file_id"], "S0002", "S0002", "dna", "ok", call=make_call(tax, conf),
                                   call_modality="dna", qc=BarcodeQC("ACGT" * 40, 160, 160, 0.0, flags=["short"]))])
    prov = project.call_provenance([sid, again, photo_only])
    assert set(prov) == {sid, again}  # a specimen without a call has no provenance
    assert [(m["modality"], m["run"]["id"], m["models"]) for m in prov[sid]] == [("dna", first, [])]
    assert [(m["run"]["id"], m["run"]["library_id"], [x["name"] for x in m["models"]]) for m in prov[again]] == [
        (run, "L2", ["dna-m"])]  # the run that rewrote the call, and only its DNA model
    assert project.item_qc_flags() == [("S0002", "ok", "short")]
    project.annotate(sid, "annotate", user="ana", note="leg missing")
    project.annotate(sid, "override", user="bo", taxonomy={"family": "Carabidea"}, unverified_names={"family": "Carabidea"})
    review = project.reviews()[sid]
    assert review["override"]["user"] == "bo" and review["override"]["unverified_names"] == {"family": "Carabidea"}
    assert [(u, a, n) for u, _, a, n in review["notes"]] == [("ana", "annotate", "leg missing")]
    assert again not in project.reviews()


def test_readonly_and_schema_checks(project, tmp_path):
    path = project.path
    pid = project.meta["project_id"]
    project.close()
    with open_project(path, readonly=True) as ro:
        assert ro.meta["project_id"] == pid and ro.schema_version == SCHEMA_VERSION
        assert ro.import_runs()[0]["settings"] == {"batch_size": 50}
        with pytest.raises(ProjectError, match="read-only"):
            ro.annotate(1, "accept", user="x")
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.commit()
    con.close()
    with pytest.raises(ProjectError, match="newer than this app"):
        open_project(path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(ProjectError, match="other.db is an SQLite database, not a project"):
        open_project(other)
    with pytest.raises(ProjectError, match="no such project"):
        open_project(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ProjectError, match="junk.db is not an SQLite database, not a project"):
        open_project(tmp_path / "junk.db")


def test_a_version_1_project_is_migrated_with_the_sort_indexes(tmp_path):
    import sqlite3

    import engine.project as ep

    path = tmp_path / "old.bioscan.db"
    open_project(path, create=True).close()
    con = sqlite3.connect(path)  # turned back into what version 1 made: no v2 indexes
    for name in ("idx_specimens_final_genus", "idx_specimens_final_bin_uri", "idx_specimens_bin_uri"):
        con.execute(f"DROP INDEX {name}")
    for column in ("call_reason", "call_references"):  # version 6's
        con.execute(f"ALTER TABLE items DROP COLUMN {column}")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with open_project(path) as p:
        assert p.schema_version == ep.SCHEMA_VERSION == 6
        assert "conflict_rank" in p.db["specimens"].columns_dict and "overlap" in p.db["matches"].columns_dict
        assert "unverified_names" in p.db["annotations"].columns_dict
        assert {"call_reason", "call_references"} <= set(p.db["items"].columns_dict)
    con = sqlite3.connect(path)
    indexed = {row[1] for row in con.execute("PRAGMA index_list(specimens)")}
    assert {"idx_specimens_final_genus", "idx_specimens_final_bin_uri", "idx_specimens_bin_uri"} <= indexed
    plan = " ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN SELECT id FROM specimens ORDER BY final_genus"))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
