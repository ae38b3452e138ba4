"""A project's putative species (engine.cluster.project.map_project_species): barcodes by identity,
photo-only specimens by their photos, each specimen once, cached in the project until the specimens change."""

import numpy as np
import pytest

from engine.cluster import ami
from engine.records import Barcode
from tests.engine.test_cluster_identity import kmer_profiles
from tests.synthetic import make_barcodes, write_tsv


def _import(folder, project, tiny_library, tiny_dna_pack):
    from engine.project import ImportSettings, import_folders

    settings = ImportSettings(library=str(tiny_library), dna_model=str(tiny_dna_pack), identify_photos=False,
                              device="cpu")
    rep = import_folders([folder], project, settings)
    assert rep.status == "completed"
    return rep


def _import_new_species(folder, project, tiny_library, tiny_dna_pack, genera: int, seed: int) -> list[Barcode]:
    """Import a second plate: new specimens of species the project has not seen."""
    new = [Barcode(f"NEW-{r.specimen_id}", r.sequence, "", r.taxonomy)
           for r in make_barcodes(genera=genera, species_per_genus=2, records_per_species=4, seed=seed)]
    folder.mkdir()
    write_tsv(folder / "barcodes.tsv", new)
    _import(folder, project, tiny_library, tiny_dna_pack)
    return new


@pytest.fixture
def imported_project(tmp_path, tiny_library, tiny_dna_pack, synthetic_split):
    """Every record of the synthetic split (16 species x 6) imported: 12 species the library has, 4 it lacks."""
    library, known, novel = synthetic_split
    folder = tmp_path / "plate1"
    folder.mkdir()
    write_tsv(folder / "barcodes.tsv", library + known + novel)
    path = tmp_path / "p.db"
    _import(folder, path, tiny_library, tiny_dna_pack)
    truth = {r.specimen_id: r.taxonomy.species for r in library + known + novel}
    return path, truth, {r.taxonomy.species for r in novel}


def test_identity_clusters_of_an_imported_project_are_its_species(imported_project):
    from engine.cluster.project import map_project_species

    path, truth, novel_species = imported_project
    m = map_project_species(path)
    assert not m.cached and m.unmapped == 0
    keys = m.specimen_keys
    assert sorted(keys) == sorted(truth) and len(set(m.specimen_ids)) == len(keys)  # each specimen once
    assert m.sources == ["dna"] * len(keys)
    assert ami([truth[k] for k in keys], m.labels) > 0.9
    assert m.result.params["chosen_by"] in ("barcode gap", "default (too few pairs to see a barcode gap)")
    assert m.xy.shape == (len(keys), 2) and np.isfinite(m.xy).all()
    # the clusters without a close library match are the species the library lacks
    unmatched = {truth[k] for c in m.no_close_match() for k in np.asarray(keys)[m.labels == c]}
    assert unmatched and unmatched <= novel_species
    rows = m.cluster_rows()
    assert [r["specimen_id"] for r in rows] == keys
    assert all(r["status"] == "clustered" and r["cluster_size"] >= 1 for r in rows)


def test_reopening_reads_the_cache_and_an_import_that_changes_specimens_invalidates_it(
        imported_project, tmp_path, tiny_library, tiny_dna_pack, monkeypatch):
    import engine.cluster.project as cp

    path, truth, _ = imported_project
    first = cp.map_project_species(path)

    def no_recompute(*args, **kwargs):
        raise AssertionError("recomputed an unchanged project")

    with monkeypatch.context() as patch:
        patch.setattr(cp, "_compute_species", no_recompute)
        again = cp.map_project_species(path)
        assert again.cached
        assert again.specimen_ids == first.specimen_ids and np.array_equal(again.labels, first.labels)
        np.testing.assert_allclose(again.xy, first.xy, rtol=1e-6)
        np.testing.assert_allclose(again.result.distance_to_centroid, first.result.distance_to_centroid, rtol=1e-6)
        assert np.array_equal(again.result.representatives, first.result.representatives)
        assert again.summary == first.summary and again.result.params == first.result.params
        assert cp.map_project_species(path, cached_only=True).cached
        # re-importing the same folder changes no specimen: the cache still holds
        _import(tmp_path / "plate1", path, tiny_library, tiny_dna_pack)
        assert cp.map_project_species(path).cached

    new = _import_new_species(tmp_path / "plate2", path, tiny_library, tiny_dna_pack, genera=2, seed=77)
    assert cp.map_project_species(path, cached_only=True) is None  # stale: nothing computed
    grown = cp.map_project_species(path)
    assert not grown.cached and len(grown.specimen_ids) == len(truth) + len(new)
    assert set(grown.specimen_keys) >= {r.specimen_id for r in new}


def test_the_cache_is_replaced_in_one_transaction(imported_project, tmp_path, tiny_library, tiny_dna_pack,
                                                  monkeypatch):
    import engine.cluster.project as cp
    import engine.project

    path, truth, _ = imported_project
    cp.map_project_species(path)
    _import_new_species(tmp_path / "plate2", path, tiny_library, tiny_dna_pack, genera=1, seed=78)

    def killed():  # called after the old map's rows are deleted, before the new ones are in
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.project, "now_iso", killed)
    with pytest.raises(KeyboardInterrupt):
        cp.map_project_species(path)
    with engine.project.open_project(path, readonly=True) as p:
        (n,), = p.conn.execute("SELECT n FROM species_maps").fetchall()  # the old map, whole
        assert n == len(truth) == p.conn.execute("SELECT count(*) FROM species_map_points").fetchone()[0]


def _writer_project(path, dna: list[Barcode], dna_emb: np.ndarray, photos: dict[str, np.ndarray]):
    """A project written directly: barcodes (novel calls) with their embeddings, and photos by specimen key."""
    from engine.project import open_project
    from engine.project.writer import ItemResult, ProjectWriter
    from engine.qc import check_barcode
    from engine.records import Call, RankCall

    call = Call({r: RankCall(r, "Synthoptera" if r == "order" else "", 0.9) for r in
                 ("order", "family", "genus", "species", "bin_uri")}, novel=True, novel_rank="family")
    with open_project(path, create=True) as p:
        w = ProjectWriter(p)
        run = w.begin_run({"app_version": "test"})
        fid = w.register_file(str(path.parent / "plate.tsv"), "barcodes", 1, 1, "a" * 64, run)
        items = [ItemResult(fid, r.specimen_id, r.specimen_id, "dna", "novel", qc=check_barcode(r.sequence),
                            call=call, call_modality="dna", embedding=vec, model_sha256="d" * 64)
                 for r, vec in zip(dna, dna_emb)]
        for key, vec in photos.items():
            pfid = w.register_file(str(path.parent / f"{key}.jpg"), "photo", 1, 1, f"p-{key}", run)
            items.append(ItemResult(pfid, "", key, "photo", "novel", photo={"width": 4, "height": 4}, call=call,
                                    call_modality="image", embedding=vec, model_sha256="i" * 64))
        w.write_batch(run, items, [fid])
        w.finish_run(run, "completed", p.status_counts(run))


def test_photo_only_specimens_are_clustered_by_their_photos_and_each_specimen_is_mapped_once(tmp_path):
    from engine.cluster.project import map_project_species
    from tests.engine.test_cluster import sphere_blobs

    recs = make_barcodes(genera=3, species_per_genus=2, records_per_species=5, seed=9)
    dna_emb = kmer_profiles([r.sequence for r in recs])
    blobs, photo_truth = sphere_blobs(k=2, per=6, dim=dna_emb.shape[1], spread=0.02, seed=2)
    photos = {f"TRAP-{i}": v for i, v in enumerate(blobs)}
    photos[recs[0].specimen_id] = blobs[0]  # a specimen with a barcode and a photo: clustered by its barcode
    path = tmp_path / "p.db"
    _writer_project(path, recs, dna_emb, photos)
    m = map_project_species(path)
    keys = m.specimen_keys
    assert len(keys) == len(set(keys)) == len(recs) + 12
    source = dict(zip(keys, m.sources))
    assert source[recs[0].specimen_id] == "dna" and source["TRAP-0"] == "photo"
    label = dict(zip(keys, m.labels))
    dna_clusters = {label[r.specimen_id] for r in recs}
    photo_clusters = [label[f"TRAP-{i}"] for i in range(12)]
    assert not dna_clusters & set(photo_clusters)  # photo-only specimens never join a barcode cluster
    assert ami([r.taxonomy.species for r in recs], [label[r.specimen_id] for r in recs]) == pytest.approx(1.0)
    assert ami(photo_truth, photo_clusters) == pytest.approx(1.0)
    assert m.n_clusters == 6 + 2 and sorted(m.result.sizes.tolist()) == sorted([5] * 6 + [6, 6])
    assert m.result.params["photo_only"]["specimens"] == 12
    assert "photo-only" in m.summary
    assert len(m.no_close_match()) == m.n_clusters  # every member was called novel


def test_cli_clusters_a_project_by_identity_by_default(tmp_path, capsys):
    import csv

    from engine.cli import main
    from engine.cluster import CLUSTER_COLUMNS

    recs = make_barcodes(genera=2, species_per_genus=3, records_per_species=4, seed=10)
    path = tmp_path / "p.db"
    _writer_project(path, recs, kmer_profiles([r.sequence for r in recs]), {})
    out = tmp_path / "c.csv"
    assert main(["cluster", "--project", str(path), "-q", "--out", str(out)]) == 0
    assert "new putative species" in capsys.readouterr().err
    assert main(["cluster", "--project", str(path), "-q", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "cached putative species" in err and "6 of 6 with no close library match" in err
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == CLUSTER_COLUMNS and [r["specimen_id"] for r in rows] == [r.specimen_id for r in recs]
    assert ami([r.taxonomy.species for r in recs], [int(r["cluster_id"]) for r in rows]) == pytest.approx(1.0)
    assert main(["cluster", "--project", str(path), "-q", "--identity-threshold", "0.8", "--out", str(out)]) == 0
    assert "new putative species" in capsys.readouterr().err  # another threshold: another cache key
