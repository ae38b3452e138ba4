"""Zero-shot clustering: label-free choice of k, determinism, noise, consensus, and the CLI."""
import csv

import numpy as np
import pytest

from engine.cluster import (
    CLUSTER_COLUMNS, NOISE, ami, cluster_embeddings, consensus_taxonomy, reduce_2d, silhouette,
)
from engine.errors import BioscanError
from engine.progress import Cancelled
from engine.records import RANKS, Call, RankCall


def sphere_blobs(k: int, per: int, dim: int = 32, spread: float = 0.08, seed: int = 0, region: float = 0.0):
    """k well separated gaussian blobs projected onto the unit sphere, with their labels.

    With ``region`` > 0 the centres lie within about that distance of one direction (a
    crowded cap of the sphere) instead of anywhere on it.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if region:
        centres = np.eye(dim)[0] + region * centres
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, per, axis=0) + spread * rng.normal(size=(k * per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), per)


@pytest.fixture(scope="module")
def blobs():
    return sphere_blobs(k=5, per=30)


@pytest.fixture(scope="module")
def umap_result(blobs):
    return cluster_embeddings(blobs[0], method="agglomerative", seed=3)


def test_silhouette_choice_recovers_the_true_number_of_groups(blobs, umap_result):
    _, truth = blobs
    r = umap_result
    assert r.params["chosen_by"] == "silhouette"
    assert r.params["n_clusters"] == r.n_clusters == 5
    assert r.params["umap_dims"] == 10
    assert ami(truth, r.labels) == pytest.approx(1.0)
    # the choice is the best of the candidates tried, and it is the reported silhouette
    best_k, best_s = max(r.scores, key=lambda t: t[1])
    assert best_k == 5 and best_s == pytest.approx(r.silhouette)
    assert r.silhouette > 0.8
    assert dict(r.scores)[2] < r.silhouette and dict(r.scores)[10] < r.silhouette


def test_same_seed_same_result(blobs, umap_result):
    again = cluster_embeddings(blobs[0], method="agglomerative", seed=3)
    assert np.array_equal(again.labels, umap_result.labels)
    assert np.array_equal(again.reduced, umap_result.reduced)
    assert again.silhouette == umap_result.silhouette


def test_cluster_summary_fields(blobs, umap_result):
    x, _ = blobs
    r = umap_result
    assert r.sizes.tolist() == [30] * 5 and r.n_noise == 0
    # ids ordered by size, ties by first member: the first item is in cluster 0
    assert r.labels[0] == 0
    for c in range(r.n_clusters):
        members = np.flatnonzero(r.labels == c)
        centroid = x[members].mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        np.testing.assert_allclose(r.distance_to_centroid[members], 1 - x[members] @ centroid, atol=1e-5)
        assert r.representatives[c] == members[np.argmin(r.distance_to_centroid[members])]


def test_fixed_number_of_clusters_is_used_as_given(blobs):
    r = cluster_embeddings(blobs[0], n_clusters=3, umap_dims=0)
    assert r.n_clusters == 3 and r.params == {"n_clusters": 3, "chosen_by": "caller", "umap_dims": 0,
                                              "umap_neighbors": 0, "seed": 0}
    assert r.scores == []
    assert r.sizes.tolist() == sorted(r.sizes.tolist(), reverse=True)  # largest cluster first
    assert r.sizes.sum() == len(blobs[0])


def test_hdbscan_marks_isolated_points_as_noise():
    # blobs crowded in one cap of the sphere, stray points anywhere else: those are far from everything
    x, truth = sphere_blobs(k=4, per=25, spread=0.02, seed=1, region=0.4)
    rng = np.random.default_rng(7)
    outliers = rng.normal(size=(5, x.shape[1]))
    outliers /= np.linalg.norm(outliers, axis=1, keepdims=True)
    data = np.vstack([x, outliers]).astype(np.float32)
    r = cluster_embeddings(data, method="hdbscan", umap_dims=0, min_cluster_size=5)
    assert r.params["min_cluster_size"] == 5 and r.params["chosen_by"] == "caller"
    assert (r.labels[-5:] == NOISE).all()
    assert r.n_clusters == 4 and r.n_noise == 5
    assert np.isnan(r.distance_to_centroid[-5:]).all() and not np.isnan(r.distance_to_centroid[:-5]).any()
    assert ami(truth, r.labels[:-5]) == pytest.approx(1.0)
    # noise counts as singletons, not as one more cluster, and scores 0 in the silhouette
    assert ami(np.r_[truth, [10, 11, 12, 13, 14]], r.labels) == pytest.approx(1.0)
    clustered_only = silhouette(data[:-5], r.labels[:-5])
    assert r.silhouette == pytest.approx(clustered_only * 100 / 105, rel=1e-5)


def test_hdbscan_chooses_min_cluster_size_without_labels():
    x, truth = sphere_blobs(k=4, per=25, spread=0.05, seed=1)
    r = cluster_embeddings(x, method="hdbscan", umap_dims=0)
    assert r.params["chosen_by"] == "silhouette"
    assert [m for m, _ in r.scores] == [2, 3, 4, 6, 8, 12, 16, 24]  # all candidates up to n/2
    assert r.n_clusters == 4 and ami(truth, r.labels) == pytest.approx(1.0)


def test_ami_is_one_for_identical_partitions_and_low_for_random():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    assert ami(a, a) == pytest.approx(1.0)
    assert ami(["x", "x", "y", "y", "z", "z", "z"], [5, 5, 9, 9, 1, 1, 1]) == pytest.approx(1.0)  # renamed
    rng = np.random.default_rng(0)
    assert abs(ami(rng.integers(0, 10, 2000), rng.integers(0, 10, 2000))) < 0.02


def test_bad_requests_are_user_errors(blobs):
    with pytest.raises(BioscanError, match="unknown clustering method"):
        cluster_embeddings(blobs[0], method="kmeans")
    with pytest.raises(BioscanError, match="agglomerative"):
        cluster_embeddings(blobs[0], method="hdbscan", n_clusters=3)
    with pytest.raises(BioscanError, match="between 1 and"):
        cluster_embeddings(blobs[0], n_clusters=1000, umap_dims=0)
    with pytest.raises(BioscanError, match="NaN"):
        cluster_embeddings(np.full((4, 3), np.nan))


def test_tiny_inputs_do_not_crash():
    one = cluster_embeddings(np.array([[1.0, 0.0]]))
    assert one.labels.tolist() == [0] and np.isnan(one.silhouette)
    two = cluster_embeddings(np.array([[1.0, 0.0], [0.0, 1.0]]), method="hdbscan")
    assert two.labels.tolist() == [NOISE, NOISE] and two.n_clusters == 0


def test_progress_can_cancel(blobs):
    def cancel(done, total, message):
        if "number of clusters" in message:
            raise Cancelled()

    with pytest.raises(Cancelled):
        cluster_embeddings(blobs[0], umap_dims=0, progress=cancel)


def test_reduce_2d_is_deterministic_and_separates_groups(blobs):
    x, truth = blobs
    a, b = reduce_2d(x, seed=1), reduce_2d(x, seed=1)
    assert a.shape == (len(x), 2) and np.array_equal(a, b)
    assert cluster_embeddings(a, n_clusters=5, umap_dims=0).labels.tolist() == \
        cluster_embeddings(a, n_clusters=5, umap_dims=0).labels.tolist()
    assert ami(truth, cluster_embeddings(a, n_clusters=5, umap_dims=0).labels) > 0.95
    assert reduce_2d(x[:3]).shape == (3, 2)  # tiny: PCA instead of UMAP


def _call(names: dict[str, str], novel: bool = False) -> Call:
    return Call({r: RankCall(r, names.get(r, ""), 0.9 if names.get(r) else 0.0) for r in RANKS}, novel=novel)


def test_consensus_keeps_majority_names_down_to_the_first_split():
    dipt = {"order": "Diptera", "family": "Cecidomyiidae"}
    labels = [0, 0, 0, 1, 1, NOISE]
    calls = [
        _call({**dipt, "genus": "Asphondylia"}, novel=True),
        _call({**dipt, "genus": "Contarinia"}, novel=True),
        _call({**dipt, "genus": "Asphondylia"}),
        _call({"order": "Hymenoptera"}),
        None,  # a member without a call counts against every name
        _call({"order": "Lepidoptera"}),
    ]
    cons = consensus_taxonomy(calls, labels)
    assert set(cons) == {0, 1}
    assert cons[0].taxonomy.family == "Cecidomyiidae" and cons[0].taxonomy.genus == "Asphondylia"
    assert cons[0].rank == "genus" and cons[0].agreement == pytest.approx(2 / 3)
    assert cons[0].novel_fraction == pytest.approx(2 / 3)
    assert cons[1].rank == "" and cons[1].taxonomy.order == ""  # 1 of 2 is no majority


# ---------------------------------------------------------------------------- CLI
def test_cli_writes_one_row_per_specimen(tmp_path, tiny_library, tiny_dna_pack, capsys):
    from engine.cli import main
    from tests.synthetic import make_barcodes, write_fasta

    recs = make_barcodes(genera=3, species_per_genus=2, records_per_species=5, seed=11)
    fasta = tmp_path / "bulk.fasta"
    write_fasta(fasta, recs)
    with open(fasta, "a") as fh:
        fh.write(">junk\nMKVLEEFQMKVLEEFQMKVLEEFQ\n")
    out = tmp_path / "clusters.csv"
    code = main(["cluster", str(fasta), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                 "--device", "cpu", "--seed", "2", "--method", "agglomerative", "-q", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "silhouette" in err and "n_clusters=" in err
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == CLUSTER_COLUMNS
    assert [r["specimen_id"] for r in rows] == [r.specimen_id for r in recs] + ["junk"]
    assert rows[-1]["status"] == "error" and rows[-1]["error"] and rows[-1]["cluster_id"] == ""
    good = rows[:-1]
    assert {r["status"] for r in good} == {"clustered"}
    truth = [r.taxonomy.species for r in recs]
    assert ami(truth, [int(r["cluster_id"]) for r in good]) > 0.9
    by_cluster = {}
    for r in good:
        by_cluster.setdefault(r["cluster_id"], []).append(r)
    for members in by_cluster.values():
        assert all(int(m["cluster_size"]) == len(members) for m in members)
        reps = {m["representative_id"] for m in members}
        assert len(reps) == 1 and reps <= {m["specimen_id"] for m in members}
        assert sum(m["is_representative"] == "true" for m in members) == 1
        assert all(0 <= float(m["distance_to_centroid"]) <= 2 for m in members)


def test_cli_novel_only_clusters_only_novel_calls(tmp_path, tiny_library, tiny_dna_pack):
    from engine.cli import main
    from engine.identify import open_identifier
    from tests.synthetic import make_barcodes, write_fasta

    ident = open_identifier(tiny_library, tiny_dna_pack, device="cpu")
    lib_recs = [r for r in make_barcodes(genera=4, species_per_genus=4, records_per_species=6)][:12]
    new_recs = make_barcodes(genera=2, species_per_genus=2, records_per_species=4, seed=5)
    for r in new_recs:
        r.specimen_id = "NEW" + r.specimen_id  # FASTA ids must be unique
    fasta = tmp_path / "mixed.fasta"
    write_fasta(fasta, lib_recs + new_recs)
    novel = {res.specimen_id for res in ident.identify(lib_recs + new_recs) if res.status == "novel"}
    out = tmp_path / "novel.csv"
    assert main(["cluster", str(fasta), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                 "--device", "cpu", "--novel-only", "--method", "hdbscan", "-q", "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(lib_recs) + len(new_recs)
    clustered = {r["specimen_id"] for r in rows if r["status"] in ("clustered", "noise")}
    assert clustered == novel and len(novel) >= 2
    assert all(r["status"] == "not clustered" and r["novel"] == "false" for r in rows
               if r["specimen_id"] not in novel)


# ---------------------------------------------------------------------------- project database mode
@pytest.fixture
def cluster_project_db(tmp_path):
    """A project of 4 novel species x 15 specimens plus 20 known ones; 10 novel specimens also have a photo."""
    from engine.project import open_project
    from engine.project.writer import ItemResult, ProjectWriter
    from engine.records import BarcodeQC, Taxonomy

    x, truth = sphere_blobs(k=5, per=16, dim=16, spread=0.05, seed=4)
    path = tmp_path / "p.db"
    with open_project(path, create=True) as p:
        w = ProjectWriter(p)
        run = w.begin_run({"app_version": "test"})
        fid = w.register_file(str(tmp_path / "plate.tsv"), "barcodes", 1, 1, "a" * 64, run)
        items = []
        for i, (vec, species) in enumerate(zip(x, truth)):
            novel = species < 4  # species 4 is in the library
            tax = Taxonomy("Diptera", "Cecidomyiidae", "", "Asphondylia", "" if novel else "Asphondylia sp4")
            items.append(ItemResult(fid, f"S{i:03d}", f"S{i:03d}", "dna", "novel" if novel else "ok",
                                    qc=BarcodeQC("ACGT" * 160, 640, 640, 0.0), call=_call(tax.as_dict(), novel),
                                    call_modality="dna", embedding=vec, model_sha256="d" * 64))
        for i in range(0, 64, 7):  # photos of some novel specimens, embedded near their barcodes
            pfid = w.register_file(str(tmp_path / f"S{i:03d}.jpg"), "photo", 1, 1, f"p{i}", run)
            items.append(ItemResult(pfid, "", f"S{i:03d}", "photo", "ok", photo={"width": 4, "height": 4},
                                    embedding=x[i][::-1].copy(), model_sha256="i" * 64))
        w.write_batch(run, items, [fid])
        w.finish_run(run, "completed", p.status_counts(run))
    return path, truth


def test_project_mode_clusters_novel_specimens_and_caches_the_map(cluster_project_db):
    from engine.cluster.project import cluster_project
    from engine.project import open_project

    path, truth = cluster_project_db
    first = cluster_project(path, modality="dna", seed=1)
    assert len(first.specimen_ids) == 64  # only the novel ones by default
    assert not first.map_cached and not first.clusters_cached
    assert first.xy.shape == (64, 2)
    assert first.result.n_clusters == 4 and ami(truth[:64], first.result.labels) == pytest.approx(1.0)
    assert [r["specimen_id"] for r in first.rows] == [f"S{i:03d}" for i in range(64)]
    assert {r["consensus_genus"] for r in first.rows} == {"Asphondylia"}
    assert {r["cluster_novel_fraction"] for r in first.rows} == {1.0}
    again = cluster_project(path, modality="dna", seed=1)
    assert again.map_cached and again.clusters_cached
    assert np.array_equal(again.xy, first.xy) and np.array_equal(again.result.labels, first.result.labels)
    np.testing.assert_allclose(again.result.distance_to_centroid, first.result.distance_to_centroid, atol=1e-6)
    assert again.rows == first.rows
    other = cluster_project(path, modality="dna", seed=1, method="hdbscan")  # same map, new clusters
    assert other.map_cached and not other.clusters_cached
    everything = cluster_project(path, modality="dna", selection="all", seed=1)
    assert len(everything.specimen_ids) == 80 and not everything.map_cached
    with open_project(path, readonly=True) as p:
        assert {"cluster_maps", "cluster_map_points", "cluster_runs", "cluster_labels"} <= set(p.db.table_names())
        assert p.conn.execute("SELECT count(*) FROM cluster_maps").fetchone()[0] == 2


def test_project_mode_fused_uses_specimens_with_both_modalities(cluster_project_db):
    from engine.cluster.project import cluster_project

    path, _ = cluster_project_db
    fused = cluster_project(path, modality="fused", seed=0)
    assert fused.specimen_keys == [f"S{i:03d}" for i in range(0, 64, 7)]
    image = cluster_project(path, modality="image", seed=0, umap_dims=0)
    assert image.specimen_keys == fused.specimen_keys


def test_cli_project_mode(cluster_project_db, tmp_path, capsys):
    from engine.cli import main

    path, truth = cluster_project_db
    out = tmp_path / "c.csv"
    args = ["cluster", "--project", str(path), "--method", "agglomerative", "--seed", "1", "-q", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "cached 2-D map, cached clusters" in err
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == CLUSTER_COLUMNS and len(rows) == 64
    assert ami(truth[:64], [int(r["cluster_id"]) for r in rows]) == pytest.approx(1.0)
    assert main(["cluster", "--project", str(path), "bulk.fasta", "--out", str(out)]) == 1


def test_cli_clusters_barcode_files_by_identity_by_default(tmp_path, tiny_library, tiny_dna_pack, capsys):
    from engine.cli import main
    from tests.synthetic import make_barcodes, write_fasta

    recs = make_barcodes(genera=3, species_per_genus=3, records_per_species=5, seed=13)
    fasta = tmp_path / "bulk.fasta"
    write_fasta(fasta, recs)
    out = tmp_path / "clusters.csv"
    assert main(["cluster", str(fasta), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                 "--device", "cpu", "-q", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "identity: 9 clusters" in err and "chosen by barcode gap" in err
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert ami([r.taxonomy.species for r in recs], [int(r["cluster_id"]) for r in rows]) == pytest.approx(1.0)
    assert main(["cluster", str(fasta), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                 "--device", "cpu", "-q", "--identity-threshold", "0.8", "--out", str(out)]) == 0
    assert "identity: 3 clusters" in capsys.readouterr().err  # species of a genus joined
