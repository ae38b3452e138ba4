"""A photo call's reason and what it was matched against reach every output: the `bioscan identify`
CSV, the project database, the project CSV (engine.photo_labels is their one vocabulary)."""
from __future__ import annotations

import csv

import pytest

from engine.identify import RESULT_COLUMNS, Identification
from engine.identify_image import OUTSIDE_DOMAIN, _photo_call, fuse_identifications
from engine.photo_labels import MATCHED_AGAINST, photo_call_sentence
from engine.records import RANKS, Call, Match, RankCall, Taxonomy

DOMAIN = {"threshold": {"order": 0.5, "family": 0.7}}


def _call(**names_conf) -> Call:
    return Call({r: RankCall(r, *names_conf.get(r, ("", 0.0))) for r in RANKS})


def _photo_calls() -> dict[str, Call]:
    """The kinds of photo call: outside the domain (against DNA references: no call at all), the DNA
    fallback inside the domain, photo references with the family cut by the domain score."""
    raw = _call(order=("Lepidoptera", 0.99), family=("Pieridae", 0.9), genus=("Pieris", 0.8))
    return {
        "outside": _photo_call(raw, ("order", "family"), 0.2, DOMAIN, "dna"),
        "fallback": _photo_call(raw, ("order", "family"), 0.9, DOMAIN, "dna"),
        "coarse": _photo_call(raw, ("order", "family", "genus", "species"), 0.6, DOMAIN, "image"),
    }


def _read_csv(path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return list(rows[0]), {r["specimen_id"] + {"dna": "/dna", "dna+image": "/fused"}.get(r["modality"], ""): r
                           for r in rows}


def test_identify_csv_says_why_a_photo_call_stopped_and_what_it_was_matched_against(tmp_path):
    from engine.export.csv_writer import write_csv

    calls = _photo_calls()
    photos = [Identification(key, f"{key}.jpg", "image", call=call,
                             matches=[Match("r1", Taxonomy(order="Lepidoptera"), 0.8)]) for key, call in calls.items()]
    dna = Identification("fallback", "b.fasta", "dna", call=_call(order=("Lepidoptera", 0.99)),
                         matches=[Match("r2", Taxonomy(order="Lepidoptera"), 0.95)])
    rows = photos + [dna] + fuse_identifications([dna], photos)
    write_csv(tmp_path / "out.csv", RESULT_COLUMNS, [r.as_row() for r in rows])  # as `bioscan identify` does
    header, by_key = _read_csv(tmp_path / "out.csv")
    # the new columns follow every column identify wrote before, in a stable order
    assert header[header.index("top_match_library") + 1:] == ["call_reason", "matched_against"]
    outside, fallback, coarse = by_key["outside"], by_key["fallback"], by_key["coarse"]
    assert (outside["order"], outside["call_reason"], outside["matched_against"]) == \
        ("", OUTSIDE_DOMAIN, "DNA references (fallback)")
    assert (fallback["order"], fallback["family"], fallback["call_reason"], fallback["matched_against"]) == \
        ("Lepidoptera", "Pieridae", "", "DNA references (fallback)")
    assert (coarse["order"], coarse["family"], coarse["call_reason"], coarse["matched_against"]) == \
        ("Lepidoptera", "", OUTSIDE_DOMAIN, "photo references")
    barcode = by_key["fallback/dna"]  # a barcode's own call rests on no photo
    assert (barcode["order"], barcode["call_reason"], barcode["matched_against"]) == ("Lepidoptera", "", "")
    fused = by_key["fallback/fused"]  # the fused row carries the words of the photo fused into it
    assert fused["matched_against"] == "DNA references (fallback)" and fused["order"] == "Lepidoptera"


def _write_project(path, calls: dict[str, Call]):
    """A project holding one photo-only specimen per call, written by the importer's writer."""
    from engine.project import open_project
    from engine.project.writer import ItemResult, ProjectWriter

    project = open_project(path, create=True)
    writer = ProjectWriter(project)
    run = writer.begin_run({"models": [{"modality": "image", "name": "img", "version": "1"}]})
    items = []
    for key, call in calls.items():
        fid = writer.register_file(str(path.parent / f"{key}.jpg"), "photo", 10, 1, key * 4, run)
        items.append(ItemResult(fid, "", key, "photo", "ok", call=call, call_modality="image",
                                matches=[Match("r1", Taxonomy(order="Lepidoptera"), 0.8)]))
    writer.write_batch(run, items, [i.file_id for i in items])
    writer.finish_run(run, "completed", {})
    return project


def test_the_project_stores_each_photo_items_reason_and_references_and_its_csv_shows_them(tmp_path):
    from engine.export.project_csv import write_project_csv

    calls = _photo_calls()
    with _write_project(tmp_path / "p.bioscan.db", calls) as project:
        stored = dict((k, (r, m)) for k, r, m in project.conn.execute(
            "SELECT s.specimen_key, i.call_reason, i.call_references FROM items i "
            "JOIN specimens s ON s.id = i.specimen_id"))
        assert stored == {k: (c.reason or None, c.references) for k, c in calls.items()}
        assert stored["outside"] == (OUTSIDE_DOMAIN, "dna") and stored["fallback"] == (None, "dna")
        detail = project.specimen(project.specimen_id("outside"))
        assert detail.items[0]["call_reason"] == OUTSIDE_DOMAIN
        n = write_project_csv(project, tmp_path / "p.csv")
    header, by_key = _read_csv(tmp_path / "p.csv")
    assert n == 3 and header.index("matched_against") == header.index("call_reason") + 1
    assert {k: (r["call_reason"], r["matched_against"]) for k, r in by_key.items()} == {
        "outside": (OUTSIDE_DOMAIN, MATCHED_AGAINST["dna"]), "fallback": ("", MATCHED_AGAINST["dna"]),
        "coarse": (OUTSIDE_DOMAIN, MATCHED_AGAINST["image"])}


@pytest.mark.parametrize("references,reason,expected", [
    ("dna", "", "Photo matched against DNA references (no photo references for this taxon)."),
    ("image", OUTSIDE_DOMAIN, f"Photo matched against photo references; ranks left uncalled: {OUTSIDE_DOMAIN}."),
    ("", "", ""),
])
def test_the_sentence_the_specimen_detail_shows(references, reason, expected):
    assert photo_call_sentence(references, reason) == expected
